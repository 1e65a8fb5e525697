//! DAVE (Discord's MLS-based end-to-end encryption, protocol version 1): the delivery-service
//! side — an external sender (P-256 signature key + basic credential), external Add proposals
//! for the simulated users' key packages, splitting the committer's commit from its welcome —
//! and the simulated users' own `davey` sessions, which join by the welcome and then
//! encrypt/decrypt media frames exactly as a Discord client does.
//!
//! Messages are built here as `[opcode u8][payload]`: 25 (external sender), 27
//! (`[operation u8][proposals VLBytes]`), 29 and 30 (`[transition_id u16][message]`); the
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
    /// Server → client: welcome (unused: the simulated users are welcomed in-process).
    #[allow(dead_code)]
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

    /// Op 27 (append): an external Remove proposal for the member at `leaf` of the group of
    /// `channel_id` at `epoch` (a user who left the call).
    pub fn remove_proposal_message(
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
        let mut m = vec![op::PROPOSALS, 0];
        m.extend(
            VLBytes::new(message.tls_serialize_detached().map_err(err)?)
                .tls_serialize_detached()
                .map_err(err)?,
        );
        Ok(m)
    }

    /// Op 27 (append): external Add proposals for these key packages, for the group of
    /// `channel_id` at `epoch` (0: the committer's pending group).
    pub fn add_proposals_message(
        &self,
        channel_id: u64,
        epoch: u64,
        key_packages: &[Vec<u8>],
    ) -> Result<Vec<u8>, String> {
        let mut proposals = Vec::new();
        for kp in key_packages {
            let kp = KeyPackageIn::tls_deserialize_exact(kp.as_slice())
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
            proposals.extend(message.tls_serialize_detached().map_err(err)?);
        }
        let mut m = vec![op::PROPOSALS, 0];
        m.extend(
            VLBytes::new(proposals)
                .tls_serialize_detached()
                .map_err(err)?,
        );
        Ok(m)
    }
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
