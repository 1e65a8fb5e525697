//! `coven demo`: the whole system on 127.0.0.1 with zero setup.
//!
//! It starts the Discord simulator (with a seeded guild and its OAuth2 app), the
//! worker and the hub exactly as in production — real HTTP, real WebSocket,
//! signed webhooks, the REST client against the simulator — plus simulated
//! players who join, move, mute and leave rooms on a timer. State lives in a
//! temporary directory that is removed on exit.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use coven_contract::{Secret, Snowflake};
use coven_sim::{SimConfig, SimHandle, Simulator, VoiceFlags};
use tokio::sync::watch;

use super::{CommandError, fail, shutdown_signal};
use crate::cli::DemoArgs;

/// Set on the re-executed demo process: it already trusts the simulator's CA.
const CHILD_MARKER: &str = "COVEN_DEMO_TRUSTS_SIM_CA";

/// `coven demo`.
pub async fn demo(args: &DemoArgs) -> ExitCode {
    if std::env::var_os(CHILD_MARKER).is_none() {
        return run_trusting_the_simulator(args).await;
    }
    match start(args).await {
        Ok(demo) => demo.run_until_signal().await,
        Err(error) => fail(error),
    }
}

/// The simulator's voice server speaks TLS with a test CA, and the voice client
/// (songbird, rustls) trusts what `SSL_CERT_FILE` names. The variable must be set
/// before the process starts any thread, so the demo runs itself again with it —
/// this process only forwards the shutdown signal and the exit status.
async fn run_trusting_the_simulator(args: &DemoArgs) -> ExitCode {
    let ca = std::env::temp_dir().join(format!("coven-demo-ca-{}.pem", std::process::id()));
    if let Err(source) = std::fs::write(&ca, coven_sim::voice::test_ca_pem()) {
        return fail(CommandError::File {
            action: "write the simulator's test CA to",
            path: ca,
            source,
        });
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => return fail(CommandError::CurrentExe(error)),
    };
    let mut command = tokio::process::Command::new(exe);
    command
        .arg("demo")
        .arg("--port")
        .arg(args.port.to_string())
        .arg("--player-interval-ms")
        .arg(args.player_interval_ms.to_string())
        .env("SSL_CERT_FILE", &ca)
        .env(CHILD_MARKER, "1")
        .kill_on_drop(true);
    if args.no_players {
        command.arg("--no-players");
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return fail(CommandError::Spawn(error)),
    };
    let status = tokio::select! {
        status = child.wait() => status,
        () = shutdown_signal() => {
            if let Some(pid) = child.id() {
                // Ask for the same graceful stop; kill_on_drop is the fallback.
                let _ = tokio::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
            child.wait().await
        }
    };
    let _ = std::fs::remove_file(&ca);
    match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// The running parts of the demo.
struct Demo {
    sim: Simulator,
    state_dir: PathBuf,
    stop: watch::Sender<bool>,
    hub: tokio::task::JoinHandle<Result<(), CommandError>>,
    worker: tokio::task::JoinHandle<Result<(), coven_worker::WorkerError>>,
}

async fn start(args: &DemoArgs) -> Result<Demo, CommandError> {
    let (listener, port) = listen(args.port)
        .await
        .map_err(|source| CommandError::DemoPort {
            port: args.port,
            source,
        })?;
    let base = format!("http://127.0.0.1:{port}");

    let mut sim_config = SimConfig::discord_like();
    sim_config.bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    sim_config.oauth.redirect_uris = vec![format!("{base}/auth/callback")];
    let sim = Simulator::start(sim_config)
        .await
        .map_err(CommandError::SimStart)?;
    let seed = sim.handle().seed();
    // Whoever signs in is a guild outsider, so the login also adds them to the guild.
    sim.handle().set_consenting_user(seed.outsider_user_ids[0]);

    let state_dir = std::env::temp_dir().join(format!("coven-demo-{}", std::process::id()));
    std::fs::create_dir_all(&state_dir).map_err(|source| CommandError::File {
        action: "create",
        path: state_dir.clone(),
        source,
    })?;
    let secret = Secret::new(format!("{:032x}", rand::random::<u128>()));
    let guild_id = Snowflake::new(sim.guild_id()).ok_or(CommandError::NoGuild)?;

    let (health, health_port) = listen(0).await.map_err(CommandError::HealthPort)?;

    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };

    let mut worker = coven_worker::WorkerSettings::new(
        guild_id,
        Secret::new(sim.bot_token()),
        format!("{base}/api/internal/events")
            .parse()
            .expect("a valid URL"),
        vec![secret.clone()],
        state_dir.join("worker"),
    );
    worker.gateway.gateway_url = Some(sim.gateway_url());

    let rest = coven_discord::DiscordRestClient::new(coven_discord::RestSettings {
        api_url: sim.api_url().parse().expect("a valid URL"),
        bot_token: Secret::new(sim.bot_token()),
        max_retries: 3,
    })
    .map_err(CommandError::RestClient)?;
    let mut hub = coven_hub::HubSettings::new(guild_id, vec![secret], base.clone());
    hub.metrics = Some(coven_worker::prometheus());
    hub.state_dir = Some(state_dir.join("hub"));
    // A demo on one machine: a few browsers, not 20,000. Within a default
    // `ulimit -n` of 1,024, so the demo does not warn about the file limit.
    hub.max_connections = 512;
    // The hub reads the room snapshot from the worker's health port.
    hub.worker_endpoints = vec![
        format!("http://127.0.0.1:{health_port}")
            .parse()
            .expect("a valid URL"),
    ];
    // "Sit at this table" in the lobby moves the signed-in user through the
    // simulator's control API (docs/lobby.md); TURN_URLS / TURN_SECRET as for `coven hub`.
    hub.demo_sim_url = Some(sim.api_url().parse().expect("a valid URL"));
    let turn = crate::config::TurnConfig::from_env(&crate::config::ProcessEnv)?;
    hub.ice.urls = turn.urls;
    hub.ice.secret = turn.secret;
    hub.login = Some(coven_hub::LoginSettings::new(
        coven_discord::OAuthSettings {
            api_url: sim.api_url().parse().expect("a valid URL"),
            client_id: sim
                .oauth_client_id()
                .parse()
                .map_err(|_| CommandError::SimClientId)?,
            client_secret: Secret::new(SimConfig::default().oauth.client_secret),
            redirect_uri: format!("{base}/auth/callback")
                .parse()
                .expect("a valid URL"),
        },
    ));

    let hub_task = tokio::spawn(super::hub::serve(
        hub,
        listener,
        rest,
        until_stopped(stopped.clone()),
    ));
    let worker_task = tokio::spawn(coven_worker::run(
        worker,
        health,
        until_stopped(stopped.clone()),
    ));
    if !args.no_players {
        tokio::spawn(players(
            sim.handle(),
            Duration::from_millis(args.player_interval_ms.max(100)),
            stopped,
        ));
    }

    println!("Spell Coven demo is running. Open {base}/ in your browser (Ctrl-C to stop).");
    println!("Sign in goes through the simulated Discord; simulated players move between rooms.\n");
    println!("Simulated Discord:\n{sim}");
    Ok(Demo {
        sim,
        state_dir,
        stop,
        hub: hub_task,
        worker: worker_task,
    })
}

/// A listener on 127.0.0.1:`port` (0: any free port) and the port it got.
async fn listen(port: u16) -> std::io::Result<(tokio::net::TcpListener, u16)> {
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

impl Demo {
    async fn run_until_signal(mut self) -> ExitCode {
        let mut failed = None;
        tokio::select! {
            () = shutdown_signal() => {}
            result = &mut self.worker => failed = Some(stopped("worker", result)),
            result = &mut self.hub => failed = Some(stopped("hub", result)),
        }
        let _ = self.stop.send(true);
        if !self.worker.is_finished() {
            let _ = self.worker.await;
        }
        if !self.hub.is_finished() {
            let _ = self.hub.await;
        }
        self.sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.state_dir);
        match failed {
            None => ExitCode::SUCCESS,
            Some(error) => fail(error),
        }
    }
}

/// Why the demo's `part` (worker or hub) stopped before a shutdown was asked for.
fn stopped<E>(
    part: &'static str,
    result: Result<Result<(), E>, tokio::task::JoinError>,
) -> CommandError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let cause: Option<Box<dyn std::error::Error + Send + Sync>> = match result {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(Box::new(error)),
        Err(error) => Some(Box::new(error)),
    };
    CommandError::PartStopped { part, cause }
}

/// Simulated players: every `interval`, one member does something a player does.
async fn players(sim: SimHandle, interval: Duration, mut stopped: watch::Receiver<bool>) {
    let seed = sim.seed();
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        let rooms: Vec<u64> = sim
            .channel_ids()
            .into_iter()
            .filter(|&id| sim.channel_json(id).is_some_and(|c| c["type"] == 2))
            .collect();
        if rooms.is_empty() {
            continue;
        }
        let player = seed.member_user_ids[rand::random_range(0..seed.member_user_ids.len())];
        let room = rooms[rand::random_range(0..rooms.len())];
        let result = match (sim.voice_channel_of(player), rand::random_range(0..10)) {
            (None, _) => sim.user_join(player, room),
            (Some(_), 0..=2) => sim.user_leave(player),
            (Some(current), 3..=5) if current != room => sim.user_move(player, room),
            (Some(_), 6..=7) => sim.user_set_flags(player, toggle_mute()),
            (Some(_), _) => sim.user_set_flags(player, toggle_video()),
        };
        if let Err(error) = result {
            tracing::debug!(%error, "a simulated player's action did not apply");
        }
    }
}

fn toggle_mute() -> VoiceFlags {
    VoiceFlags {
        self_mute: Some(rand::random()),
        ..VoiceFlags::default()
    }
}

fn toggle_video() -> VoiceFlags {
    VoiceFlags {
        self_video: Some(rand::random()),
        ..VoiceFlags::default()
    }
}
