//! The delivery service's view of one call's DAVE group (one per voice channel), as
//! discord/dave-protocol describes the voice gateway's part: it knows the group's epoch, its
//! members and their leaf indexes, the pending members' key packages and the proposals
//! broadcast in the current epoch. It proposes (op 27 append) adding whoever sends a key
//! package and removing whoever leaves; revokes (op 27 revoke) the Add of a user who leaves
//! before being committed; takes the **first** valid commit of an epoch from any member
//! (op 28) and discards the others; announces it (op 29) to the committer and the members,
//! welcomes (op 30) the clients it added; executes a transition (op 22) once every client
//! in it is ready (op 23) or after a timeout; when one member is left alone, resets the
//! group (op 24 `epoch: 1`, op 21 `transition_id: 0`; "Sole member reset"); and, when a
//! client without DAVE is allowed in, downgrades the call (op 21 `protocol_version: 0`) and
//! upgrades it again when that client leaves (op 24).
//!
//! Members are real clients (the bot, or a client that took a user's place through
//! `/_sim/voice/users/{id}/client`) and simulated users with their own `davey` sessions.
//! Simulated members process every proposal and commit like any client; their own commits
//! are used only when no real client can commit (docs/simulator.md, "Voice").

use std::collections::{HashMap, HashSet};

use davey::ProposalsOperationType;
use openmls::prelude::LeafNodeIndex;
use serde_json::{Value, json};

use super::dave::{self, DeliveryService};
use super::{VoiceCore, VoiceSession};

/// How long a transition waits for its clients' op 23 before it is executed anyway ("once
/// all members are ready (or after a timeout)"; Discord does not give the value, its
/// "Member Remove" section speaks of roughly two seconds).
pub(crate) const TRANSITION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A proposal broadcast in the current epoch and not revoked.
struct Proposed {
    /// The user added, or removed.
    user: u64,
    add: bool,
    /// The proposal `MLSMessage`.
    message: Vec<u8>,
    /// Its `ProposalRef`.
    reference: Vec<u8>,
}

/// A transition waiting for its clients' op 23.
struct Awaiting {
    transition: u16,
    clients: Vec<u64>,
    ready: HashSet<u64>,
}

/// One call's group.
#[derive(Default)]
pub(crate) struct Group {
    /// 0: not established (every member pending, each with a local group of its own).
    epoch: u64,
    /// The last transition id used (1, 2, …; 0 is the immediate re-initialisation).
    transition: u16,
    /// Leaf index → member, as the committed proposals placed them (RFC 9420 §12.3:
    /// removes blank their leaf, adds take the leftmost blank leaf in commit order).
    leaves: Vec<Option<u64>>,
    /// Key packages of pending members (not welcomed yet).
    key_packages: HashMap<u64, Vec<u8>>,
    proposals: Vec<Proposed>,
    /// Simulated users with a DAVE session for this group.
    sims: HashSet<u64>,
    /// Real clients that flagged an invalid commit/welcome (op 31) and will send a new key
    /// package: not sent proposals meanwhile.
    rekeying: HashSet<u64>,
    awaiting: Option<Awaiting>,
    /// The call runs on transport encryption only (protocol version 0): a client without
    /// DAVE is in it ("Downgrade to Transport-Only Encryption").
    downgraded: bool,
}

/// What happened, for the counters (applied after the voice lock is released).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub commits: u64,
    pub discarded: u64,
    pub sims_welcomed: u64,
    pub welcomes_sent: u64,
    pub removals: u64,
    pub revocations: u64,
    pub resets: u64,
    pub downgrades: u64,
    pub upgrades: u64,
    pub timeouts: u64,
    pub errors: u64,
    /// Transitions now waiting for op 23 (a timeout is started for each).
    pub awaiting: Vec<u16>,
}

/// Everything an operation needs: the voice state, the delivery service, the channel and
/// who is in it (looked up in the world before the voice lock was taken).
pub(crate) struct Call<'a> {
    pub core: &'a mut VoiceCore,
    pub ds: &'a DeliveryService,
    pub channel: u64,
    /// Every user in the channel.
    pub present: &'a [u64],
    pub tally: &'a mut Tally,
    /// Damage the next announced commit (fault).
    pub corrupt: &'a mut bool,
}

fn warn(tally: &mut Tally, what: &str, e: impl std::fmt::Debug) {
    tracing::warn!(error = ?e, "{what}");
    tally.errors += 1;
}

impl Call<'_> {
    fn session(&mut self, user: u64) -> Option<&mut VoiceSession> {
        self.core
            .sessions
            .values_mut()
            .find(|s| s.user_id == user && s.dave_version > 0)
    }

    fn is_real(&self, user: u64) -> bool {
        self.core
            .sessions
            .values()
            .any(|s| s.user_id == user && s.dave_version > 0)
    }

    fn send_binary(&mut self, user: u64, message: &[u8]) {
        if let Some(s) = self.session(user) {
            s.send_binary(message);
        }
    }

    fn send(&mut self, user: u64, payload: Value) {
        if let Some(s) = self.session(user) {
            s.send(payload);
        }
    }

    /// Whether a real client without DAVE is in the call.
    fn transport_only_present(&self) -> bool {
        self.core
            .sessions
            .values()
            .any(|s| s.dave_version == 0 && s.mode.is_some() && self.present.contains(&s.user_id))
    }

    /// The real DAVE clients in the call.
    fn dave_clients(&self) -> Vec<u64> {
        self.present
            .iter()
            .copied()
            .filter(|u| self.is_real(*u))
            .collect()
    }

    /// The simulated users present (not driven by a real client).
    fn sims_present(&self) -> Vec<u64> {
        self.present
            .iter()
            .copied()
            .filter(|u| !self.core.real_users.contains(u))
            .collect()
    }

    /// Runs `f` on the channel's group (created, with sessions for the simulated users
    /// present, if `create`); the group is dropped once no real client is left in it.
    fn with_group<R>(
        &mut self,
        create: bool,
        f: impl FnOnce(&mut Self, &mut Group) -> R,
    ) -> Option<R> {
        let mut g = match self.core.groups.remove(&self.channel) {
            Some(g) => g,
            None if create => {
                let mut g = Group::default();
                for sim in self.sims_present() {
                    if self.sim_session(&mut g, sim) {
                        g.propose_add(self, sim);
                    }
                }
                g
            }
            None => return None,
        };
        let r = f(self, &mut g);
        let real_left = self.present.iter().any(|u| self.is_real(*u));
        if real_left {
            self.core.groups.insert(self.channel, g);
        } else {
            for sim in g.sims {
                self.core.dave_users.remove(&sim);
            }
        }
        Some(r)
    }

    /// A simulated user's session and key package, pending in `g`.
    fn sim_session(&mut self, g: &mut Group, user: u64) -> bool {
        match self.ds.new_user_session(user, self.channel) {
            Ok((session, kp)) => {
                self.core.dave_users.insert(user, session);
                g.sims.insert(user);
                g.key_packages.insert(user, kp);
                true
            }
            Err(e) => {
                warn(self.tally, "simulated user's DAVE session", e);
                false
            }
        }
    }
}

impl Group {
    fn established(&self) -> bool {
        self.epoch > 0
    }

    fn leaf_of(&self, user: u64) -> Option<u32> {
        self.leaves
            .iter()
            .position(|l| *l == Some(user))
            .and_then(|i| u32::try_from(i).ok())
    }

    fn members(&self) -> impl Iterator<Item = u64> + '_ {
        self.leaves.iter().flatten().copied()
    }

    /// Real clients that are sent proposals: established → its real members (not re-keying);
    /// not established → the real pending members (each has a local group).
    fn recipients(&self, call: &Call<'_>) -> Vec<u64> {
        let candidates: Vec<u64> = if self.established() {
            self.members()
                .filter(|u| !self.key_packages.contains_key(u) && !self.rekeying.contains(u))
                .collect()
        } else {
            self.key_packages.keys().copied().collect()
        };
        candidates
            .into_iter()
            .filter(|u| call.is_real(*u) && call.present.contains(u))
            .collect()
    }

    fn next_transition(&mut self) -> u16 {
        self.transition = self.transition.checked_add(1).unwrap_or(1);
        self.transition
    }

    /// Broadcasts a proposal at the current epoch to the recipients (not to `about`), has the
    /// established simulated members store it, and — when no real member can commit — takes
    /// the commit of the first simulated member.
    fn propose(&mut self, call: &mut Call<'_>, about: u64, add: bool, message: Vec<u8>) {
        let reference = dave::proposal_ref(&message);
        let framed = dave::append_message([message.as_slice()]);
        let recipients: Vec<u64> = self
            .recipients(call)
            .into_iter()
            .filter(|u| *u != about)
            .collect();
        for user in &recipients {
            call.send_binary(*user, &framed);
        }
        self.proposals.push(Proposed {
            user: about,
            add,
            message,
            reference,
        });
        if !self.established() {
            return;
        }
        let mut sim_commit = None;
        for (leaf, member) in self.leaves.iter().enumerate() {
            let Some(user) = *member else { continue };
            if user == about || !self.sims.contains(&user) {
                continue;
            }
            let Some(session) = call.core.dave_users.get_mut(&user) else {
                continue;
            };
            match session.process_proposals(ProposalsOperationType::APPEND, &framed[2..], None) {
                Ok(Some(cw)) if sim_commit.is_none() => sim_commit = Some((leaf, user, cw)),
                Ok(_) => {}
                Err(e) => warn(call.tally, "simulated member's DAVE proposals", e),
            }
        }
        if recipients.is_empty()
            && let Some((_, user, cw)) = sim_commit
        {
            let mut payload = cw.commit;
            payload.extend(cw.welcome.unwrap_or_default());
            self.commit(call, user, &payload);
        }
    }

    /// Revokes `user`'s Add proposal of this epoch, if it has one (it left before a commit
    /// added it). Returns whether it did.
    fn revoke(&mut self, call: &mut Call<'_>, user: u64) -> bool {
        let Some(i) = self.proposals.iter().position(|p| p.add && p.user == user) else {
            return false;
        };
        let gone = self.proposals.remove(i);
        let framed = dave::revoke_message([gone.reference.as_slice()]);
        for to in self.recipients(call).into_iter().filter(|u| *u != user) {
            call.send_binary(to, &framed);
        }
        if self.established() {
            for member in self.members().collect::<Vec<_>>() {
                if let (true, Some(session)) = (
                    self.sims.contains(&member),
                    call.core.dave_users.get_mut(&member),
                ) && let Err(e) =
                    session.process_proposals(ProposalsOperationType::REVOKE, &framed[2..], None)
                {
                    warn(call.tally, "simulated member's DAVE revoke", e);
                }
            }
        }
        call.tally.revocations += 1;
        true
    }

    /// An Add proposal for `user`'s key package at the current epoch.
    fn propose_add(&mut self, call: &mut Call<'_>, user: u64) {
        let Some(kp) = self.key_packages.get(&user).cloned() else {
            return;
        };
        match call.ds.add_proposal(call.channel, self.epoch, &kp) {
            Ok(message) => self.propose(call, user, true, message),
            Err(e) => warn(call.tally, "DAVE add proposal", e),
        }
    }

    /// A Remove proposal for `user`'s leaf (once per epoch).
    fn propose_remove(&mut self, call: &mut Call<'_>, user: u64) {
        let Some(leaf) = self.leaf_of(user) else {
            return;
        };
        if self.proposals.iter().any(|p| !p.add && p.user == user) {
            return;
        }
        match call
            .ds
            .remove_proposal(call.channel, self.epoch, LeafNodeIndex::new(leaf))
        {
            Ok(message) => {
                call.tally.removals += 1;
                self.propose(call, user, false, message);
            }
            Err(e) => warn(call.tally, "DAVE remove proposal", e),
        }
    }

    /// "Sole member reset": `sole` is the only member left; it is told to start a new group
    /// (op 24 `epoch: 1`, op 21 `transition_id: 0`), and the pending members are proposed
    /// again at epoch 0 once its new key package arrives.
    fn reset(&mut self, call: &mut Call<'_>, sole: u64) {
        call.send(
            sole,
            json!({"op": 24, "d": {"protocol_version": dave::DAVE_VERSION, "epoch": 1}}),
        );
        call.send(
            sole,
            json!({"op": 21, "d": {"protocol_version": dave::DAVE_VERSION, "transition_id": 0}}),
        );
        self.epoch = 0;
        self.leaves.clear();
        self.proposals.clear();
        self.rekeying.clear();
        self.awaiting = None;
        self.key_packages.remove(&sole);
        let pending: Vec<u64> = self.key_packages.keys().copied().collect();
        for user in pending {
            self.propose_add(call, user);
        }
        call.tally.resets += 1;
    }

    /// A real client's key package (op 26): it is (again) a pending member. A member that
    /// re-keys is first proposed for removal (its old leaf).
    fn key_package(&mut self, call: &mut Call<'_>, user: u64, kp: Vec<u8>) {
        self.revoke(call, user);
        self.rekeying.remove(&user);
        if self.established() {
            self.propose_remove(call, user);
        }
        self.key_packages.insert(user, kp);
        self.propose_add(call, user);
        if !self.established() {
            // "A client that joins when there is not an established group receives any
            // already sent in-flight add proposals for existing pending members."
            let others: Vec<&[u8]> = self
                .proposals
                .iter()
                .filter(|p| p.user != user)
                .map(|p| p.message.as_slice())
                .collect();
            if !others.is_empty() {
                let framed = dave::append_message(others);
                call.send_binary(user, &framed);
            }
        }
    }

    /// A commit (op 28) from `from`: the first valid one of the epoch is announced, any other
    /// is discarded.
    fn commit(&mut self, call: &mut Call<'_>, from: u64, payload: &[u8]) {
        let Ok((commit, welcome)) = dave::split_commit_welcome(payload) else {
            call.tally.errors += 1;
            return;
        };
        let Some(order) = self.validate(call, from, &commit) else {
            call.tally.discarded += 1;
            return;
        };
        let transition = self.next_transition();
        self.announce(call, from, transition, &commit);
        let added = self.apply(from, &order);
        for user in &added {
            self.key_packages.remove(user);
            if let Some(welcome) = &welcome {
                self.welcome(call, *user, transition, welcome);
            }
        }
        self.key_packages.remove(&from);
        self.epoch += 1;
        self.proposals.clear();
        call.tally.commits += 1;
        let clients: Vec<u64> = self.members().filter(|u| call.is_real(*u)).collect();
        self.awaiting = Some(Awaiting {
            transition,
            clients,
            ready: HashSet::new(),
        });
        call.tally.awaiting.push(transition);
    }

    /// "Voice Gateway Commit Validity": made in the current epoch by a member (not
    /// established: a pending client), committing by reference exactly the epoch's unrevoked
    /// proposals (not established: all but the committer's own Add). Returns the references
    /// in commit order, `None` for a commit to discard.
    fn validate(&self, call: &Call<'_>, from: u64, commit: &[u8]) -> Option<Vec<Vec<u8>>> {
        let may_commit = if self.established() {
            self.leaf_of(from).is_some() && !self.key_packages.contains_key(&from)
        } else {
            self.key_packages.contains_key(&from)
        };
        let wanted: HashSet<&[u8]> = self
            .proposals
            .iter()
            .filter(|p| self.established() || p.user != from)
            .map(|p| p.reference.as_slice())
            .collect();
        let info = dave::commit_info(commit);
        let refs = match &info {
            Ok(dave::CommitInfo {
                epoch,
                refs: Some(refs),
            }) if *epoch == self.epoch
                && may_commit
                && (call.is_real(from) || self.sims.contains(&from)) =>
            {
                refs
            }
            _ => {
                tracing::debug!(from, epoch = self.epoch, ?info, "DAVE commit discarded");
                return None;
            }
        };
        let named: HashSet<&[u8]> = refs.iter().map(Vec::as_slice).collect();
        if wanted.is_empty() || named != wanted || refs.len() != wanted.len() {
            tracing::debug!(
                from,
                epoch = self.epoch,
                "DAVE commit with other proposals discarded"
            );
            return None;
        }
        Some(refs.clone())
    }

    /// Op 29 to the committer and the established real members; the established simulated
    /// members apply the commit (the committer among them merges its own).
    fn announce(&self, call: &mut Call<'_>, from: u64, transition: u16, commit: &[u8]) {
        let mut to: Vec<u64> = if self.established() {
            self.recipients(call)
        } else {
            Vec::new()
        };
        if !to.contains(&from) && call.is_real(from) {
            to.push(from);
        }
        for user in to {
            let mut copy = commit.to_vec();
            if user == from
                && std::mem::take(call.corrupt)
                && let Some(last) = copy.last_mut()
            {
                *last ^= 0xff; // the commit's signature no longer verifies
            }
            let m = dave::transition_message(dave::op::ANNOUNCE_COMMIT, transition, &copy);
            call.send_binary(user, &m);
        }
        for member in self.members().filter(|m| self.sims.contains(m)) {
            if let Some(session) = call.core.dave_users.get_mut(&member)
                && let Err(e) = session.process_commit(commit)
            {
                warn(call.tally, "simulated member's DAVE commit", e);
            }
        }
    }

    /// The tree after the commit (RFC 9420 §12.3: removes, then adds in commit order into
    /// the leftmost blank leaf). Returns the users added.
    fn apply(&mut self, from: u64, order: &[Vec<u8>]) -> Vec<u64> {
        if !self.established() {
            self.leaves = vec![Some(from)];
        }
        let by_ref: HashMap<&[u8], (u64, bool)> = self
            .proposals
            .iter()
            .map(|p| (p.reference.as_slice(), (p.user, p.add)))
            .collect();
        let referenced: Vec<(u64, bool)> = order
            .iter()
            .filter_map(|r| by_ref.get(r.as_slice()).copied())
            .collect();
        for (user, _) in referenced.iter().filter(|(_, add)| !add) {
            if let Some(leaf) = self.leaves.iter_mut().find(|l| **l == Some(*user)) {
                *leaf = None;
            }
        }
        let mut added = Vec::new();
        for (user, _) in referenced.iter().filter(|(_, add)| *add) {
            added.push(*user);
            match self.leaves.iter_mut().find(|l| l.is_none()) {
                Some(leaf) => *leaf = Some(*user),
                None => self.leaves.push(Some(*user)),
            }
        }
        while self.leaves.last().is_some_and(Option::is_none) {
            self.leaves.pop();
        }
        added
    }

    /// Welcomes an added user: a real client by op 30, a simulated user in-process.
    fn welcome(&self, call: &mut Call<'_>, user: u64, transition: u16, welcome: &[u8]) {
        if self.sims.contains(&user) {
            if let Some(session) = call.core.dave_users.get_mut(&user) {
                match session.process_welcome(welcome) {
                    Ok(()) => call.tally.sims_welcomed += 1,
                    Err(e) => warn(call.tally, "simulated user's DAVE welcome", e),
                }
            }
        } else if call.is_real(user) {
            let m = dave::transition_message(dave::op::WELCOME, transition, welcome);
            call.send_binary(user, &m);
            call.tally.welcomes_sent += 1;
        }
    }

    /// A client is ready for `transition` (op 23): once all its clients are, execute (op 22).
    fn ready(&mut self, call: &mut Call<'_>, user: u64, transition: u16) {
        match &mut self.awaiting {
            Some(a) if a.transition == transition => {
                a.ready.insert(user);
            }
            // Not a transition this group waits for (already executed): execute it for this
            // client alone.
            _ => {
                call.send(user, json!({"op": 22, "d": {"transition_id": transition}}));
                return;
            }
        }
        self.execute_if_ready(call);
    }

    /// The timeout of `transition`: if it still waits, execute it for all its clients.
    fn expire(&mut self, call: &mut Call<'_>, transition: u16) {
        if let Some(a) = self.awaiting.take_if(|a| a.transition == transition) {
            for user in a.clients {
                call.send(user, json!({"op": 22, "d": {"transition_id": transition}}));
            }
            call.tally.timeouts += 1;
        }
    }

    fn execute_if_ready(&mut self, call: &mut Call<'_>) {
        let done = self.awaiting.as_ref().is_some_and(|a| {
            a.clients
                .iter()
                .all(|u| a.ready.contains(u) || !call.present.contains(u) || !call.is_real(*u))
        });
        if !done {
            return;
        }
        if let Some(a) = self.awaiting.take() {
            for user in a.clients {
                call.send(
                    user,
                    json!({"op": 22, "d": {"transition_id": a.transition}}),
                );
            }
        }
    }

    /// `user` left the call (or its client left voice).
    fn leave(&mut self, call: &mut Call<'_>, user: u64) {
        let revoked = self.revoke(call, user);
        self.key_packages.remove(&user);
        self.rekeying.remove(&user);
        if let Some(a) = &mut self.awaiting {
            a.clients.retain(|u| *u != user);
        }
        if !revoked && self.established() && self.leaf_of(user).is_some() {
            let others: Vec<u64> = self
                .members()
                .filter(|u| *u != user && call.present.contains(u))
                .collect();
            match others.as_slice() {
                [sole] if call.is_real(*sole) => self.reset(call, *sole),
                _ => self.propose_remove(call, user),
            }
        }
        if self.sims.remove(&user) {
            call.core.dave_users.remove(&user);
        }
        self.execute_if_ready(call);
        if self.downgraded && !call.transport_only_present() {
            self.upgrade(call);
        }
    }

    /// A client without DAVE joined: every DAVE client is told to prepare the transition to
    /// protocol version 0 (op 21), and op 22 executes it once they are ready (op 23).
    fn downgrade(&mut self, call: &mut Call<'_>) {
        if self.downgraded {
            return;
        }
        self.downgraded = true;
        let transition = self.next_transition();
        let clients = call.dave_clients();
        for user in &clients {
            call.send(
                *user,
                json!({"op": 21, "d": {"protocol_version": 0, "transition_id": transition}}),
            );
        }
        self.awaiting = Some(Awaiting {
            transition,
            clients,
            ready: HashSet::new(),
        });
        call.tally.awaiting.push(transition);
        call.tally.downgrades += 1;
    }

    /// The last client without DAVE left: "the voice gateway announces that the protocol
    /// version is about to change and a new MLS group must be created" (op 24 `epoch: 1`) and
    /// the group is created anew, the simulated users proposed again.
    fn upgrade(&mut self, call: &mut Call<'_>) {
        self.downgraded = false;
        for user in call.dave_clients() {
            call.send(
                user,
                json!({"op": 24, "d": {"protocol_version": dave::DAVE_VERSION, "epoch": 1}}),
            );
        }
        self.epoch = 0;
        self.leaves.clear();
        self.proposals.clear();
        self.rekeying.clear();
        self.awaiting = None;
        self.key_packages.clear();
        for sim in std::mem::take(&mut self.sims) {
            if call.present.contains(&sim) && call.sim_session(self, sim) {
                self.propose_add(call, sim);
            } else {
                call.core.dave_users.remove(&sim);
            }
        }
        call.tally.upgrades += 1;
    }
}

/// The timeout of a transition (`TRANSITION_TIMEOUT` after it was announced).
pub(crate) fn expire(call: &mut Call<'_>, transition: u16) {
    call.with_group(false, |call, g| g.expire(call, transition));
}

/// A real client without DAVE (allowed: `voice_require_dave` off) joined a DAVE call.
pub(crate) fn client_without_dave(call: &mut Call<'_>) {
    call.with_group(false, |call, g| g.downgrade(call));
}

/// Whether the call in the channel is downgraded to transport-only encryption.
pub(crate) fn downgraded(core: &VoiceCore, channel: u64) -> bool {
    core.groups.get(&channel).is_some_and(|g| g.downgraded)
}

/// A real client's key package (op 26).
pub(crate) fn key_package(call: &mut Call<'_>, user: u64, kp: Vec<u8>) {
    call.with_group(true, |call, g| g.key_package(call, user, kp));
}

/// A real client's commit, with the welcome if any (op 28).
pub(crate) fn commit(call: &mut Call<'_>, user: u64, payload: &[u8]) {
    call.with_group(false, |call, g| g.commit(call, user, payload));
}

/// A real client is ready for a transition (op 23).
pub(crate) fn ready(call: &mut Call<'_>, user: u64, transition: u16) {
    let handled = call.with_group(false, |call, g| g.ready(call, user, transition));
    if handled.is_none() {
        call.send(user, json!({"op": 22, "d": {"transition_id": transition}}));
    }
}

/// A real client could not process a commit or welcome (op 31): it is proposed for removal
/// and re-added when its new key package arrives.
pub(crate) fn invalid(call: &mut Call<'_>, user: u64) {
    call.with_group(false, |call, g| {
        if let Some(a) = &mut g.awaiting {
            a.clients.retain(|u| *u != user);
        }
        if g.established() && g.leaf_of(user).is_some() {
            g.rekeying.insert(user);
            g.propose_remove(call, user);
        }
        g.execute_if_ready(call);
    });
}

/// A simulated user joined the channel: if the call has a group, it gets a session and is
/// proposed.
pub(crate) fn sim_joined(call: &mut Call<'_>, user: u64) {
    call.with_group(false, |call, g| {
        if !g.sims.contains(&user) && call.sim_session(g, user) {
            g.propose_add(call, user);
        }
    });
}

/// `user` (simulated or real) left the channel.
pub(crate) fn left(call: &mut Call<'_>, user: u64) {
    call.with_group(false, |call, g| g.leave(call, user));
}
