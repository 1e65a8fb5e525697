//! `coven sim`: the Discord simulator alone, for pointing any Discord client at it.
//!
//! Discord-like by default (`SimConfig::discord_like`: DAVE required, Discord's heartbeat,
//! channel-creation bucket and resume window); options select the fast test settings. It
//! prints everything a client needs, including the voice endpoint and the CA file to trust
//! for voice TLS (docs/simulator.md, "`coven sim`").

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use coven_sim::{BucketConfig, SimConfig};

use super::{CommandError, fail, shutdown_signal};
use crate::cli::SimArgs;

/// The configuration `args` select.
pub fn config(args: &SimArgs) -> SimConfig {
    let mut config = if args.fast {
        SimConfig::default()
    } else {
        SimConfig::discord_like()
    };
    config.bind = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    if let Some(ms) = args.heartbeat_ms {
        config.heartbeat_interval = Duration::from_millis(ms);
        config.heartbeat_timeout = config
            .heartbeat_timeout
            .map(|_| config.heartbeat_interval * 3 / 2);
    }
    if args.no_dave {
        config.voice_dave = false;
    }
    if args.allow_no_dave {
        config.voice_require_dave = false;
    }
    if args.fast_buckets {
        let fast = SimConfig::default();
        config.channel_create_bucket = fast.channel_create_bucket;
        config.default_bucket = fast.default_bucket;
    }
    if let Some(secs) = args.resume_window_secs {
        config.session_resume_window = Duration::from_secs(secs);
    }
    config
}

/// `coven sim`.
pub async fn sim(args: &SimArgs) -> ExitCode {
    let config = config(args);
    let ca = std::env::temp_dir().join(format!("coven-sim-ca-{}.pem", std::process::id()));
    if let Err(source) = std::fs::write(&ca, coven_sim::voice::test_ca_pem()) {
        return fail(CommandError::File {
            action: "write the simulator's test CA to",
            path: ca,
            source,
        });
    }
    let bucket = config.channel_create_bucket;
    let sim = match coven_sim::Simulator::start(config).await {
        Ok(sim) => sim,
        Err(source) => {
            let _ = std::fs::remove_file(&ca);
            return fail(CommandError::SimStartOn {
                port: args.port,
                source,
            });
        }
    };
    // Install the signal handlers (first poll) before printing: a client that reads the
    // summary and stops us at once must still get the graceful stop that removes the CA file.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let stopped_early = tokio::select! {
        biased;
        () = &mut shutdown => true,
        () = std::future::ready(()) => false,
    };
    println!(
        "Discord simulator running (Ctrl-C to stop)\n{sim}\n{}",
        extra_lines(&ca, bucket, sim.config().session_resume_window)
    );
    if !stopped_early {
        shutdown.await;
    }
    sim.shutdown().await;
    let _ = std::fs::remove_file(&ca);
    ExitCode::SUCCESS
}

/// The lines only `coven sim` prints: the CA file and the settings that differ from tests.
fn extra_lines(ca: &Path, bucket: BucketConfig, resume: Duration) -> String {
    let ca = ca.display();
    format!(
        "voice ca:      {ca}  (Node: NODE_EXTRA_CA_CERTS={ca}; rustls/songbird: SSL_CERT_FILE={ca})\n\
         limits:        channel creation {} per {} ms per guild; sessions resumable {} s",
        bucket.limit,
        bucket.per.as_millis(),
        resume.as_secs()
    )
}
