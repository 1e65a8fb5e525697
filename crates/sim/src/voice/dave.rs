//! DAVE (Discord's MLS-based end-to-end encryption, protocol version 1): the delivery
//! service's messages — an external sender (P-256 signature key + basic credential), external
//! Add and Remove proposals and their `ProposalRef`s (for revoking), reading a commit's epoch
//! and proposal references, splitting a commit from its welcome — and the simulated users'
//! own `davey` sessions, which join by the welcome and then encrypt/decrypt media frames
//! exactly as a Discord client does. What is sent when is `group.rs`'s business.
//!
//! Messages are built here as `[opcode u8][payload]`: 25 (external sender), 27
//! (`[operation u8][proposals or refs VLBytes]`), 29 and 30 (`[transition_id u16][message]`); the
//! session's outbox (`outbox.rs`) prefixes v8's `[seq u16]`. Client → server frames are
//! `[opcode u8][payload]` in every version: 26 (key package) and 28 (commit `MLSMessage`
//! immediately followed by the `Welcome`, if any).

use std::num::NonZeroU16;

use davey::DaveSession;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _, VLBytes};
use openmls::prelude::{
    BasicCredential, Ciphersuite, ExternalProposal, ExternalSender, GroupEpoch, GroupId,
    KeyPackageIn, LeafNodeIndex, MlsMessageIn, ProtocolVersion, SenderExtensionIndex,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

/// DAVE protocol version offered.
pub const DAVE_VERSION: u16 = 1;
/// Opcodes.
pub mod op {
    /// Server → client: external sender package.
    pub const EXTERNAL_SENDER: u8 = 25;
    /// Client → server: key package.
    pub const KEY_PACKAGE: u8 = 26;
    /// Server → client: proposals.
    pub const PROPOSALS: u8 = 27;
    /// Client → server: commit + welcome.
    pub const COMMIT_WELCOME: u8 = 28;
    /// Server → client: announce commit transition.
    pub const ANNOUNCE_COMMIT: u8 = 29;
    /// Server → client: welcome for a client added by another member's commit.
    pub const WELCOME: u8 = 30;
}

/// The delivery service's identity.
pub(crate) struct DeliveryService {
    signer: SignatureKeyPair,
    /// TLS-serialised `ExternalSender`.
    external_sender: Vec<u8>,
    provider: OpenMlsRustCrypto,
}

fn err(e: impl std::fmt::Debug) -> String {
    format!("{e:?}")
}

impl DeliveryService {
    pub fn new() -> Result<Self, String> {
        let suite = Ciphersuite::MLS_128_DHKEMP256_AES128GCM_SHA256_P256;
        let signer = SignatureKeyPair::new(suite.signature_algorithm()).map_err(err)?;
        let credential = BasicCredential::new(b"coven-sim".to_vec());
        let sender = ExternalSender::new(signer.to_public_vec().into(), credential.into());
        let external_sender = sender.tls_serialize_detached().map_err(err)?;
        Ok(Self {
            signer,
            external_sender,
            provider: OpenMlsRustCrypto::default(),
        })
    }

    /// The external sender package (op 25), opcode included.
    pub fn external_sender_message(&self) -> Vec<u8> {
        let mut m = vec![op::EXTERNAL_SENDER];
        m.extend_from_slice(&self.external_sender);
        m
    }

    /// A simulated user's DAVE session, ready for proposals; returns it and its key package.
    pub fn new_user_session(
        &self,
        user_id: u64,
        channel_id: u64,
    ) -> Result<(DaveSession, Vec<u8>), String> {
        let version = NonZeroU16::new(DAVE_VERSION).ok_or("version")?;
        let mut session = DaveSession::new(version, user_id, channel_id, None).map_err(err)?;
        session
            .set_external_sender(&self.external_sender)
            .map_err(err)?;
        let kp = session.create_key_package().map_err(err)?;
        Ok((session, kp))
    }

    /// An external Remove proposal (`MLSMessage`) for the member at `leaf` of the group of
    /// `channel_id` at `epoch`.
    pub fn remove_proposal(
        &self,
        channel_id: u64,
        epoch: u64,
        leaf: LeafNodeIndex,
    ) -> Result<Vec<u8>, String> {
        let message = ExternalProposal::new_remove::<OpenMlsRustCrypto>(
            leaf,
            GroupId::from_slice(&channel_id.to_be_bytes()),
            GroupEpoch::from(epoch),
            &self.signer,
            SenderExtensionIndex::new(0),
        )
        .map_err(err)?;
        message.tls_serialize_detached().map_err(err)
    }

    /// An external Add proposal (`MLSMessage`) for this key package, for the group of
    /// `channel_id` at `epoch` (0: a group not established yet).
    pub fn add_proposal(
        &self,
        channel_id: u64,
        epoch: u64,
        key_package: &[u8],
    ) -> Result<Vec<u8>, String> {
        let kp = KeyPackageIn::tls_deserialize_exact(key_package)
            .map_err(err)?
            .validate(self.provider.crypto(), ProtocolVersion::Mls10)
            .map_err(err)?;
        let message = ExternalProposal::new_add::<OpenMlsRustCrypto>(
            kp,
            GroupId::from_slice(&channel_id.to_be_bytes()),
            GroupEpoch::from(epoch),
            &self.signer,
            SenderExtensionIndex::new(0),
        )
        .map_err(err)?;
        message.tls_serialize_detached().map_err(err)
    }
}

/// Op 27 (`append`): `[27][0][proposal MLSMessages<V>]`.
pub(crate) fn append_message<'a>(proposals: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut all = Vec::new();
    for p in proposals {
        all.extend_from_slice(p);
    }
    let mut m = vec![op::PROPOSALS, APPEND];
    m.extend(vl_bytes(all));
    m
}

/// Op 27 (`revoke`): `[27][1][ProposalRef<V><V>]` — the proposals to forget.
pub(crate) fn revoke_message<'a>(refs: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut all = Vec::new();
    for r in refs {
        all.extend(vl_bytes(r.to_vec()));
    }
    let mut m = vec![op::PROPOSALS, REVOKE];
    m.extend(vl_bytes(all));
    m
}

/// Op 27's operation types (discord/dave-protocol, `ProposalsOperationType`).
pub(crate) const APPEND: u8 = 0;
/// See [`APPEND`].
pub(crate) const REVOKE: u8 = 1;

fn vl_bytes(bytes: Vec<u8>) -> Vec<u8> {
    // A VLBytes of any length serialises (the length prefix is a QUIC-style varint).
    VLBytes::new(bytes)
        .tls_serialize_detached()
        .unwrap_or_default()
}

/// The `ProposalRef` of a proposal sent by the external sender: RFC 9420 §5.2
/// `MakeProposalRef(value) = RefHash("MLS 1.0 Proposal Reference", value)`, where `value` is
/// the `AuthenticatedContent` — for a `PublicMessage` from an external sender (no membership
/// tag) exactly the `MLSMessage` without its 2-byte protocol version. SHA-256 is the hash of
/// DAVE v1's ciphersuite 2.
pub(crate) fn proposal_ref(message: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    let mut input = vl_bytes(b"MLS 1.0 Proposal Reference".to_vec());
    input.extend(vl_bytes(message.get(2..).unwrap_or_default().to_vec()));
    sha2::Sha256::digest(&input).to_vec()
}

/// What the delivery service reads from a commit (it is a `PublicMessage`, see
/// discord/dave-protocol "Voice Gateway Commit Validity").
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CommitInfo {
    /// The epoch the commit was made in.
    pub epoch: u64,
    /// The proposal references it commits, in order (`None`: it carries an inline proposal,
    /// which DAVE does not allow).
    pub refs: Option<Vec<Vec<u8>>>,
}

/// Reads a commit `MLSMessage`: `version u16, wire_format u16 (1 = public), FramedContent
/// { group_id<V>, epoch u64, sender, authenticated_data<V>, content_type u8 (3 = commit),
/// Commit { proposals: ProposalOrRef<V>, … } }` (RFC 9420 §6, §12.4).
pub(crate) fn commit_info(commit: &[u8]) -> Result<CommitInfo, String> {
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if rest.len() < n {
            return Err("commit too short".into());
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head)
    }
    fn vl(rest: &mut &[u8]) -> Result<Vec<u8>, String> {
        let v = VLBytes::tls_deserialize(rest).map_err(err)?;
        Ok(v.as_slice().to_vec())
    }
    let mut rest = commit;
    let header = take(&mut rest, 4)?;
    if header[2..4] != [0, 1] {
        return Err("not a PublicMessage".into());
    }
    vl(&mut rest)?; // group id
    let epoch = u64::from_be_bytes(take(&mut rest, 8)?.try_into().map_err(err)?);
    match take(&mut rest, 1)?[0] {
        1 | 2 => {
            take(&mut rest, 4)?; // member leaf index / external sender index
        }
        3 | 4 => {}
        other => return Err(format!("sender type {other}")),
    }
    vl(&mut rest)?; // authenticated data
    if take(&mut rest, 1)?[0] != 3 {
        return Err("not a commit".into());
    }
    let proposals = vl(&mut rest)?;
    let mut list = proposals.as_slice();
    let mut refs = Vec::new();
    while !list.is_empty() {
        if take(&mut list, 1)?[0] != 2 {
            return Ok(CommitInfo { epoch, refs: None });
        }
        refs.push(vl(&mut list)?);
    }
    Ok(CommitInfo {
        epoch,
        refs: Some(refs),
    })
}

/// Whether a media frame is a DAVE protocol frame (ends with the `0xFAFA` magic marker),
/// i.e. end-to-end encrypted rather than sent with transport encryption only.
pub(crate) fn is_protocol_frame(frame: &[u8]) -> bool {
    frame.ends_with(&[0xfa, 0xfa])
}

/// Splits op 28's payload (opcode removed) into the commit message and the welcome.
pub(crate) fn split_commit_welcome(payload: &[u8]) -> Result<(Vec<u8>, Option<Vec<u8>>), String> {
    let mut rest = payload;
    MlsMessageIn::tls_deserialize(&mut rest).map_err(err)?;
    let commit_len = payload.len() - rest.len();
    let welcome = (!rest.is_empty()).then(|| rest.to_vec());
    Ok((payload[..commit_len].to_vec(), welcome))
}

/// `[opcode][transition_id u16][message]`.
pub(crate) fn transition_message(opcode: u8, transition_id: u16, message: &[u8]) -> Vec<u8> {
    let mut m = vec![opcode];
    m.extend_from_slice(&transition_id.to_be_bytes());
    m.extend_from_slice(message);
    m
}

use openmls::prelude::OpenMlsProvider as _;

#[cfg(test)]
mod tests {
    use davey::ProposalsOperationType;

    use super::*;

    const CHANNEL: u64 = 42;

    /// A pending client (user 1, its own local group) given an Add proposal for user 2.
    fn committer_with_add(ds: &DeliveryService) -> (DaveSession, Vec<u8>, Vec<u8>) {
        let (committer, _) = ds.new_user_session(1, CHANNEL).expect("session");
        let (_, kp) = ds.new_user_session(2, CHANNEL).expect("session");
        let add = ds.add_proposal(CHANNEL, 0, &kp).expect("add");
        let framed = append_message([add.as_slice()]);
        (committer, add, framed)
    }

    #[test]
    fn a_commit_names_its_epoch_and_the_refs_of_the_proposals_it_commits() {
        let ds = DeliveryService::new().expect("ds");
        let (mut committer, add, framed) = committer_with_add(&ds);
        let cw = committer
            .process_proposals(ProposalsOperationType::APPEND, &framed[2..], None)
            .expect("proposals")
            .expect("a commit");
        assert!(cw.welcome.is_some());
        assert_eq!(
            commit_info(&cw.commit),
            Ok(CommitInfo {
                epoch: 0,
                refs: Some(vec![proposal_ref(&add)]),
            })
        );
        assert!(commit_info(&add).is_err(), "a proposal is not a commit");
    }

    #[test]
    fn a_revoke_names_the_proposal_by_its_ref_and_withdraws_it() {
        let ds = DeliveryService::new().expect("ds");
        let (mut committer, add, framed) = committer_with_add(&ds);
        committer
            .process_proposals(ProposalsOperationType::APPEND, &framed[2..], None)
            .expect("proposals");
        let wrong = revoke_message([[7u8; 32].as_slice()]);
        assert!(
            committer
                .process_proposals(ProposalsOperationType::REVOKE, &wrong[2..], None)
                .is_err(),
            "an unknown ref is refused"
        );
        let revoke = revoke_message([proposal_ref(&add).as_slice()]);
        assert_eq!(revoke[..2], [op::PROPOSALS, REVOKE]);
        let left = committer
            .process_proposals(ProposalsOperationType::REVOKE, &revoke[2..], None)
            .expect("the ref is the client's");
        assert!(left.is_none(), "nothing left to commit");
    }
}
