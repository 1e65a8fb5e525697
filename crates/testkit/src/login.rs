//! Signing in to a hub through the simulator's OAuth2, as a browser would.

/// Signs in to the hub at `base` through the simulator's OAuth2 (which consents
/// at once) and returns the hub's JWT.
pub async fn sim_login(base: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let start = http.get(format!("{base}/auth/login")).send().await.unwrap();
    assert!(start.status().is_redirection(), "{}", start.status());
    let cookie = start.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let authorize = start.headers()["location"].to_str().unwrap().to_owned();
    let consent = http.get(&authorize).send().await.unwrap();
    let callback = consent.headers()["location"].to_str().unwrap().to_owned();
    let done = http
        .get(&callback)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let target = done.headers()["location"].to_str().unwrap();
    target.strip_prefix("/#token=").expect("a token").to_owned()
}
