//! `coven run`: worker and hub in one process, the single-machine deployment.
//!
//! Both halves are configured exactly as when run separately; the webhook still
//! goes over loopback HTTP and is still signed, so the hub treats it like any
//! other delivery and the two can later be split without changing anything.

use std::process::ExitCode;

use tokio::sync::watch;

use super::{CommandError, fail, hub, shutdown_signal, worker};
use crate::config::{ProcessEnv, RunConfig};

/// `coven run`.
pub async fn run() -> ExitCode {
    let config = match RunConfig::from_env(&ProcessEnv) {
        Ok(config) => config,
        Err(error) => return fail(error),
    };
    let rest = match hub::rest_client(&config.hub) {
        Ok(rest) => rest,
        Err(error) => return fail(error),
    };
    let listener = match hub::bind_hub(&config.hub).await {
        Ok(listener) => listener,
        Err(error) => return fail(error),
    };
    let health = match worker::bind_health(
        config.worker.health_check_host,
        config.worker.health_check_port,
    )
    .await
    {
        Ok(listener) => listener,
        Err(error) => return fail(error),
    };

    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let mut hub_settings = hub::hub_settings(&config.hub);
    // One process, one Prometheus registry: both halves render the same metrics.
    hub_settings.metrics = Some(coven_worker::prometheus());
    let mut hub_task = tokio::spawn(hub::serve(
        hub_settings,
        listener,
        rest,
        until_stopped(stopped.clone()),
    ));
    let mut worker_task = tokio::spawn(coven_worker::run(
        worker::worker_settings(&config.worker),
        health,
        until_stopped(stopped),
    ));
    tracing::info!(hub = %config.worker.hub_endpoint, "worker and hub running in one process");

    // Run until a signal, or until either half stops by itself (e.g. Discord
    // refused the token): then stop the other half too.
    let (mut worker_result, mut hub_result) = (None, None);
    tokio::select! {
        () = shutdown_signal() => {}
        result = &mut worker_task => worker_result = Some(result),
        result = &mut hub_task => hub_result = Some(result),
    }
    let _ = stop.send(true);
    let worker_result = match worker_result {
        Some(result) => result,
        None => worker_task.await,
    };
    let hub_result = match hub_result {
        Some(result) => result,
        None => hub_task.await,
    };
    match (worker_result, hub_result) {
        (Ok(Ok(())), Ok(Ok(()))) => ExitCode::SUCCESS,
        (Ok(Err(error)), _) => fail(error),
        (_, Ok(Err(error))) => fail(error),
        _ => fail(CommandError::Panicked),
    }
}
