//! The OAuth2 + PKCE client against the simulator: the happy path from authorize URL to
//! current user, a wrong verifier, a reused code, refresh, revoke and a wrong secret.

mod common;

use coven_contract::Secret;
use coven_discord::{DiscordError, PkceVerifier};

use common::{consent, oauth, oauth_with_secret, sim};

#[tokio::test]
async fn happy_path_from_authorize_url_to_current_user() {
    let sim = sim().await;
    let alice = sim.handle().seed().member_user_ids[0];
    let client = oauth(&sim);
    let login = client.authorize(&["identify", "guilds.join"]);
    assert_eq!(login.url.path(), "/oauth2/authorize");
    let code = consent(&login).await;

    let grant = client
        .exchange_code(&code, &login.verifier)
        .await
        .expect("tokens");
    assert_eq!(grant.token_type, "Bearer");
    assert_eq!(grant.scopes, ["identify", "guilds.join"]);
    assert!(grant.expires_in.as_secs() > 0);
    assert!(grant.refresh_token.is_some());
    assert_eq!(sim.handle().counters().oauth_tokens_issued, 1);

    let user = client
        .current_user(&grant.access_token)
        .await
        .expect("current user");
    assert_eq!(user.id.get(), alice);
    assert_eq!(user.username, "alice");

    let printed = format!("{grant:?} {client:?} {login:?}");
    assert!(!printed.contains(grant.access_token.expose()));
    assert!(!printed.contains(login.verifier.expose()));
    assert!(!printed.contains(&sim.config().oauth.client_secret));
}

#[tokio::test]
async fn a_wrong_verifier_is_an_invalid_grant() {
    let sim = sim().await;
    let client = oauth(&sim);
    let login = client.authorize(&["identify"]);
    let code = consent(&login).await;
    let wrong = PkceVerifier::generate();
    let result = client.exchange_code(&code, &wrong).await;
    assert!(
        matches!(result, Err(DiscordError::InvalidGrant { .. })),
        "{result:?}"
    );
    // The hub answers an invalid grant with 401 UNAUTHORIZED (its login tests).
    assert_eq!(sim.handle().counters().oauth_tokens_issued, 0);
}

#[tokio::test]
async fn a_code_works_once() {
    let sim = sim().await;
    let client = oauth(&sim);
    let login = client.authorize(&["identify"]);
    let code = consent(&login).await;
    client
        .exchange_code(&code, &login.verifier)
        .await
        .expect("first use");
    let reused = client.exchange_code(&code, &login.verifier).await;
    assert!(
        matches!(reused, Err(DiscordError::InvalidGrant { .. })),
        "{reused:?}"
    );
    assert_eq!(sim.handle().counters().oauth_tokens_issued, 1);
}

#[tokio::test]
async fn refresh_replaces_the_tokens() {
    let sim = sim().await;
    let client = oauth(&sim);
    let login = client.authorize(&["identify", "guilds.join"]);
    let code = consent(&login).await;
    let first = client
        .exchange_code(&code, &login.verifier)
        .await
        .expect("tokens");
    let refresh = first.refresh_token.clone().expect("a refresh token");

    let second = client.refresh(&refresh).await.expect("refreshed");
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(second.scopes, first.scopes);
    client
        .current_user(&second.access_token)
        .await
        .expect("the new token works");
    assert_eq!(
        client.current_user(&first.access_token).await,
        Err(DiscordError::Unauthorized),
        "the replaced access token no longer works"
    );
    let again = client.refresh(&refresh).await;
    assert!(
        matches!(again, Err(DiscordError::InvalidGrant { .. })),
        "{again:?}"
    );
}

#[tokio::test]
async fn revoke_ends_the_tokens() {
    let sim = sim().await;
    let client = oauth(&sim);
    let login = client.authorize(&["identify"]);
    let code = consent(&login).await;
    let grant = client
        .exchange_code(&code, &login.verifier)
        .await
        .expect("tokens");
    client
        .current_user(&grant.access_token)
        .await
        .expect("valid before revoking");

    client.revoke(&grant.access_token).await.expect("revoked");
    assert_eq!(
        client.current_user(&grant.access_token).await,
        Err(DiscordError::Unauthorized)
    );
    let refreshed = client
        .refresh(grant.refresh_token.as_ref().expect("refresh token"))
        .await;
    assert!(
        matches!(refreshed, Err(DiscordError::InvalidGrant { .. })),
        "{refreshed:?}"
    );
}

#[tokio::test]
async fn a_wrong_client_secret_is_an_oauth_error_without_the_secret() {
    let sim = sim().await;
    let good = oauth(&sim);
    let login = good.authorize(&["identify"]);
    let code = consent(&login).await;
    let bad = oauth_with_secret(&sim, "not-the-secret");
    let result = bad.exchange_code(&code, &login.verifier).await;
    let Err(error) = result else {
        panic!("a wrong secret must fail");
    };
    assert!(
        matches!(&error, DiscordError::OAuth { status: 401, error, .. } if error == "invalid_client"),
        "{error:?}"
    );
    assert!(!format!("{error} {error:?}").contains("not-the-secret"));
    // A misconfigured app is not the player's fault: the hub answers this `OAuth` error
    // with 502 (the hub's login tests).
    let revoked = bad.revoke(&Secret::new("whatever")).await;
    assert!(
        matches!(revoked, Err(DiscordError::OAuth { status: 401, .. })),
        "{revoked:?}"
    );
}
