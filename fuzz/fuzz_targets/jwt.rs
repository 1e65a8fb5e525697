//! The JWT a browser sends in `auth` (and an API caller in `Authorization:
//! Bearer`) through the hub's own verifier (docs/spec.md §7, docs/security.md): header
//! parsing, key choice by `kid`, the algorithm pinned by the key, signature and
//! claims (`iss`, `aud`, `exp`, `nbf`, `sub`, 60 s leeway).
//!
//! The hub trusts the three test keys of `crates/hub/tests/fixtures/jwks.json`
//! (RSA `rsa-1`, P-256 `ec-1`, Ed25519 `ed-1`), taken through the same
//! `VerifyingKey::from_jwk` as a JWKS. The input builds a token: a header and claims,
//! each either structured (an algorithm name, a `kid`, issuer, audience, times,
//! subject) or raw JSON bytes, signed by the real `ed-1` private key, by an
//! outsider's Ed25519 key, with HS256 keyed by a trusted public key (the classic
//! algorithm confusion), with an empty signature or with any text; then perhaps one
//! byte of the token changed. Input layout (`coven_fuzz::Input`): choice bytes for
//! the header (structured or raw, `alg`, `kid`, `typ`), the claims (structured or
//! raw, `iss`, `aud`, `sub`, `exp` and `nbf` with `i16` offsets of 4 s), the signing
//! and the tampering (`u16` position, byte); then eight parts: raw header, raw
//! claims, another `alg`, another `kid`, another issuer, another audience, the
//! subject, the signature text. Checks (docs/reliability.md, "Fuzzing"):
//! - soundness: an accepted token is signed by the real `ed-1` key over exactly its
//!   text (checked here with `ed25519-dalek`), its header says `EdDSA` and `ed-1`,
//!   and its claims (read here with `serde_json`) carry the issuer, the audience, a
//!   non-empty `sub` and an `exp` not past (beyond the leeway) that the result repeats;
//! - agreement: for structured, untouched tokens the hub's decision equals one
//!   computed here from the rules of docs/security.md, away from the leeway's edges;
//! - tokens over 8 KiB are refused as malformed.

#![no_main]

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coven_fuzz::Input;
use coven_hub::fuzzing::verify_token;
use coven_hub::{JwtError, KeySource, VerifiedUser, VerifyingKey};
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _};
use futures_util::future::BoxFuture;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.fuzz.invalid";
const AUDIENCE: &str = "spell-coven";
const LEEWAY: u64 = 60;
const LEEWAY_I64: i64 = 60;
/// Decisions this close to a leeway edge are not compared (the clock moves).
const EDGE: i64 = 3;
const MAX_TOKEN_BYTES: usize = 8 * 1024;
const JWKS: &str = include_str!("../../crates/hub/tests/fixtures/jwks.json");
const ED_PRIVATE: &str = include_str!("../../crates/hub/tests/fixtures/ed_private.pem");
const RSA_PUBLIC: &str = include_str!("../../crates/hub/tests/fixtures/rsa_public.pem");

struct Keys {
    by_kid: HashMap<String, Arc<VerifyingKey>>,
    real: EncodingKey,
    real_public: ed25519_dalek::VerifyingKey,
    outsider: SigningKey,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let set: JwkSet = serde_json::from_str(JWKS).expect("fixture JWKS");
    let by_kid = set
        .keys
        .iter()
        .map(|jwk| {
            let key = VerifyingKey::from_jwk(jwk).expect("fixture keys are usable");
            (jwk.common.key_id.clone().expect("kid"), Arc::new(key))
        })
        .collect();
    let x = set.find("ed-1").and_then(|k| match &k.algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(p) => Some(p.x.clone()),
        _ => None,
    });
    let x: [u8; 32] = URL_SAFE_NO_PAD
        .decode(x.expect("ed-1"))
        .unwrap()
        .try_into()
        .unwrap();
    Keys {
        by_kid,
        real: EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).expect("fixture key"),
        real_public: ed25519_dalek::VerifyingKey::from_bytes(&x).unwrap(),
        outsider: SigningKey::from_bytes(&[7; 32]),
    }
});

/// The trusted keys, by `kid`, as the hub's key source.
struct Trusted;

impl KeySource for Trusted {
    fn key(&self, kid: &str) -> BoxFuture<'_, Option<Arc<VerifyingKey>>> {
        let key = KEYS.by_kid.get(kid).cloned();
        Box::pin(async move { key })
    }
}

#[derive(Debug)]
enum Alg {
    EdDsa,
    Rs256,
    Es256,
    Hs256,
    None,
    Other(String),
}

#[derive(Debug)]
enum Kid {
    Ed,
    Rsa,
    Ec,
    Other(String),
}

#[derive(Debug)]
struct HeaderSpec {
    alg: Alg,
    kid: Option<Kid>,
    typ: Option<String>,
}

#[derive(Debug)]
enum Text {
    Right,
    Wrong(String),
    Missing,
    Number(u32),
    /// An array: the right value among others.
    List(Vec<String>),
}

#[derive(Debug)]
struct ClaimsSpec {
    iss: Text,
    aud: Text,
    sub: Option<String>,
    /// Seconds from now, times 4.
    exp: Option<i16>,
    nbf: Option<i16>,
    extra: Option<(String, String)>,
}

#[derive(Debug)]
enum Part<T> {
    Spec(T),
    Raw(Vec<u8>),
}

#[derive(Debug)]
enum Signing {
    Real,
    Outsider,
    /// HS256 keyed with the RSA public key's PEM text.
    HmacWithRsaPem,
    /// HS256 keyed with the Ed25519 public key's bytes.
    HmacWithEdKey,
    Empty,
    Text(String),
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn alg_name(alg: &Alg) -> &str {
    match alg {
        Alg::EdDsa => "EdDSA",
        Alg::Rs256 => "RS256",
        Alg::Es256 => "ES256",
        Alg::Hs256 => "HS256",
        Alg::None => "none",
        Alg::Other(name) => name,
    }
}

fn kid_name(kid: &Kid) -> &str {
    match kid {
        Kid::Ed => "ed-1",
        Kid::Rsa => "rsa-1",
        Kid::Ec => "ec-1",
        Kid::Other(name) => name,
    }
}

fn header_json(spec: &HeaderSpec) -> Value {
    let mut header = json!({ "alg": alg_name(&spec.alg) });
    if let Some(kid) = &spec.kid {
        header["kid"] = json!(kid_name(kid));
    }
    if let Some(typ) = &spec.typ {
        header["typ"] = json!(typ);
    }
    header
}

fn text_json(text: &Text, right: &str) -> Option<Value> {
    match text {
        Text::Right => Some(json!(right)),
        Text::Wrong(other) => Some(json!(other)),
        Text::Missing => None,
        Text::Number(n) => Some(json!(n)),
        Text::List(others) => {
            let mut all: Vec<&str> = others.iter().take(3).map(String::as_str).collect();
            all.push(right);
            Some(json!(all))
        }
    }
}

fn claims_json(spec: &ClaimsSpec, now: u64) -> Value {
    let mut claims = json!({});
    if let Some(iss) = text_json(&spec.iss, ISSUER) {
        claims["iss"] = iss;
    }
    if let Some(aud) = text_json(&spec.aud, AUDIENCE) {
        claims["aud"] = aud;
    }
    if let Some(sub) = &spec.sub {
        claims["sub"] = json!(sub);
    }
    let at = |offset: i16| now.saturating_add_signed(i64::from(offset) * 4);
    if let Some(exp) = spec.exp {
        claims["exp"] = json!(at(exp));
    }
    if let Some(nbf) = spec.nbf {
        claims["nbf"] = json!(at(nbf));
    }
    if let Some((name, value)) = &spec.extra
        && !["iss", "aud", "sub", "exp", "nbf"].contains(&name.as_str())
    {
        claims[name] = json!(value);
    }
    claims
}

/// What docs/security.md says of a structured, untouched token; `None` near an edge.
fn expected(header: &HeaderSpec, claims: &ClaimsSpec, signing: &Signing) -> Option<bool> {
    let near = |offset: Option<i16>, edge: i64| {
        offset.is_some_and(|o| (i64::from(o) * 4 - edge).abs() <= EDGE)
    };
    if near(claims.exp, -(LEEWAY_I64)) || near(claims.nbf, LEEWAY_I64) {
        return None;
    }
    let matches = |text: &Text, right: &str| match text {
        Text::Right | Text::List(_) => true,
        Text::Wrong(other) => other == right,
        _ => false,
    };
    Some(
        matches!(signing, Signing::Real)
            && alg_name(&header.alg) == "EdDSA"
            && header.kid.as_ref().map(kid_name) == Some("ed-1")
            && matches(&claims.iss, ISSUER)
            && matches(&claims.aud, AUDIENCE)
            && claims.sub.as_ref().is_some_and(|s| !s.is_empty())
            && claims
                .exp
                .is_some_and(|o| i64::from(o) * 4 >= -(LEEWAY_I64))
            && claims.nbf.is_none_or(|o| i64::from(o) * 4 <= LEEWAY_I64),
    )
}

fn sign(signing: &Signing, message: &str) -> String {
    let keys = &*KEYS;
    match signing {
        Signing::Real => {
            jsonwebtoken::crypto::sign(message.as_bytes(), &keys.real, Algorithm::EdDSA)
                .expect("EdDSA signs")
        }
        Signing::Outsider => {
            URL_SAFE_NO_PAD.encode(keys.outsider.sign(message.as_bytes()).to_bytes())
        }
        Signing::HmacWithRsaPem => jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
            Algorithm::HS256,
        )
        .expect("HS256 signs"),
        Signing::HmacWithEdKey => jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(keys.real_public.as_bytes()),
            Algorithm::HS256,
        )
        .expect("HS256 signs"),
        Signing::Empty => String::new(),
        Signing::Text(text) => text.clone(),
    }
}

/// Runs the verifier, whose key source is always ready, to completion.
fn run(token: &str) -> Result<VerifiedUser, JwtError> {
    let sources: Vec<Arc<dyn KeySource>> = vec![Arc::new(Trusted)];
    let mut future = pin!(verify_token(
        sources,
        ISSUER,
        AUDIENCE,
        Duration::from_secs(LEEWAY),
        token
    ));
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("the fuzz key source never waits"),
    }
}

/// Checks an accepted token independently of jsonwebtoken.
fn check_accepted(token: &str, user: &VerifiedUser, now: u64) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "accepted a token without three parts");
    let signature: [u8; 64] = URL_SAFE_NO_PAD
        .decode(parts[2])
        .expect("accepted signature is base64url")
        .try_into()
        .expect("accepted signature is 64 bytes");
    let message = format!("{}.{}", parts[0], parts[1]);
    KEYS.real_public
        .verify(
            message.as_bytes(),
            &ed25519_dalek::Signature::from_bytes(&signature),
        )
        .expect("accepted a token the real key did not sign");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], "ed-1");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let has = |value: &Value, right: &str| {
        value == right
            || value
                .as_array()
                .is_some_and(|all| all.iter().any(|v| v == right))
    };
    assert!(
        has(&claims["iss"], ISSUER),
        "accepted another issuer: {claims}"
    );
    assert!(
        has(&claims["aud"], AUDIENCE),
        "accepted another audience: {claims}"
    );
    assert_eq!(claims["sub"].as_str(), Some(user.subject.as_str()));
    assert!(!user.subject.is_empty());
    assert_eq!(claims["exp"].as_u64(), Some(user.expires_at));
    assert!(
        user.expires_at + LEEWAY + 1 >= now,
        "accepted an expired token"
    );
    if let Some(nbf) = claims.get("nbf") {
        assert!(
            nbf.as_u64().is_some_and(|nbf| nbf <= now + LEEWAY + 1),
            "accepted a future nbf"
        );
    }
}

/// The token the input describes.
struct Token {
    header: Part<HeaderSpec>,
    claims: Part<ClaimsSpec>,
    signing: Signing,
    tamper: Option<(u16, u8)>,
}

fn text_choice(choice: u8, other: String, extra: &str) -> Text {
    match choice {
        0 => Text::Right,
        1 => Text::Wrong(other),
        2 => Text::Missing,
        3 => Text::Number(1_730_000_000),
        _ => Text::List(vec![other, extra.to_owned()]),
    }
}

fn read(data: &[u8]) -> Token {
    let mut input = Input::new(data);
    let (header_raw, alg, kid, typ) = (
        input.choice(2),
        input.choice(6),
        input.choice(5),
        input.choice(2),
    );
    let (claims_raw, iss, aud, sub) = (
        input.choice(2),
        input.choice(5),
        input.choice(5),
        input.choice(2),
    );
    let exp = (input.choice(2) == 0).then_some(input.i16());
    let nbf = (input.choice(2) == 1).then_some(input.i16());
    let signing = input.choice(6);
    let tampered = input.choice(2) == 1;
    let tamper = tampered.then_some((input.u16(), input.byte()));
    let raw_header = input.part().to_vec();
    let raw_claims = input.part().to_vec();
    let (other_alg, other_kid, other_iss, other_aud) =
        (input.text(), input.text(), input.text(), input.text());
    let subject = input.text();
    let signature = input.text();
    let header = if header_raw == 1 {
        Part::Raw(raw_header)
    } else {
        Part::Spec(HeaderSpec {
            alg: match alg {
                0 => Alg::EdDsa,
                1 => Alg::Rs256,
                2 => Alg::Es256,
                3 => Alg::Hs256,
                4 => Alg::None,
                _ => Alg::Other(other_alg),
            },
            kid: match kid {
                0 => None,
                1 => Some(Kid::Ed),
                2 => Some(Kid::Rsa),
                3 => Some(Kid::Ec),
                _ => Some(Kid::Other(other_kid)),
            },
            typ: (typ == 1).then(|| "JWT".to_owned()),
        })
    };
    let claims = if claims_raw == 1 {
        Part::Raw(raw_claims)
    } else {
        Part::Spec(ClaimsSpec {
            iss: text_choice(iss, other_iss, AUDIENCE),
            aud: text_choice(aud, other_aud, ISSUER),
            sub: (sub == 0).then_some(subject),
            exp,
            nbf,
            extra: Some(("name".to_owned(), "Fuzz".to_owned())),
        })
    };
    let signing = match signing {
        0 => Signing::Real,
        1 => Signing::Outsider,
        2 => Signing::HmacWithRsaPem,
        3 => Signing::HmacWithEdKey,
        4 => Signing::Empty,
        _ => Signing::Text(signature),
    };
    Token {
        header,
        claims,
        signing,
        tamper,
    }
}

fuzz_target!(|data: &[u8]| {
    let input = read(data);
    let now = now();
    let header = match &input.header {
        Part::Spec(spec) => serde_json::to_vec(&header_json(spec)).unwrap(),
        Part::Raw(bytes) => bytes.clone(),
    };
    let claims = match &input.claims {
        Part::Spec(spec) => serde_json::to_vec(&claims_json(spec, now)).unwrap(),
        Part::Raw(bytes) => bytes.clone(),
    };
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&header),
        URL_SAFE_NO_PAD.encode(&claims)
    );
    let signed = format!("{message}.{}", sign(&input.signing, &message));
    let mut token = signed.clone();
    if let Some((at, byte)) = input.tamper {
        let mut bytes = token.into_bytes();
        let at = usize::from(at) % bytes.len();
        bytes[at] = byte;
        token = String::from_utf8_lossy(&bytes).into_owned();
    }

    let result = run(&token);
    if token.len() > MAX_TOKEN_BYTES {
        assert_eq!(result, Err(JwtError::Malformed));
        return;
    }
    if let Ok(user) = &result {
        check_accepted(&token, user, now);
    }
    if let (Part::Spec(header), Part::Spec(claims)) = (&input.header, &input.claims)
        && token == signed
        && let Some(expected) = expected(header, claims, &input.signing)
    {
        assert_eq!(
            result.is_ok(),
            expected,
            "{result:?} for {header:?} {claims:?}"
        );
    }
});
