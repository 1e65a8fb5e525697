//! The roles of one worker of an active/standby pair (`REDIS_URL`).
//!
//! A pair's worker is a standby until the store lets it take the lease, then
//! active — it holds the Discord session and delivers — until the store fences
//! it off, then a standby again, … until shutdown or a fatal close. This file
//! only switches roles (health, metrics, the bot's voice); what the lease
//! means for each write is the store's business ([`crate::store`]). See
//! `docs/worker.md`.

use crate::gateway::Ended;
use crate::health::{GatewayState, Role};
use crate::store::StoreError;
use crate::{Term, WorkerError, metrics};

/// Runs one worker of a pair until shutdown or a fatal close.
pub(crate) async fn run(term: &Term<'_>) -> Result<(), WorkerError> {
    let mut shutdown = term.stop.subscribe();
    loop {
        term.voice.standby();
        term.status.set_role(Role::Standby);
        metrics::lease_held(false);
        tracing::info!("role: standby (another worker holds the session, or none has yet)");
        let reachable = |ok| term.status.set_redis_reachable(ok);
        let Some(active) = term
            .store
            .take_lease(term.settings.lease, reachable, &mut shutdown)
            .await
        else {
            return Ok(());
        };
        term.voice.activate();
        term.status.set_role(Role::Active);
        term.status.set_state(GatewayState::Disconnected);
        metrics::lease_held(true);
        if active.took_over() {
            metrics::took_over();
        }
        tracing::info!(
            token = active.token(),
            took_over = active.took_over(),
            "role: active (holds the worker lease and the session)"
        );
        match active.import_local_state(&term.settings.state_dir).await {
            Ok(()) => {}
            Err(error) if error.is_transient() || matches!(error, StoreError::Fenced) => {
                tracing::warn!(%error, "could not import the local state file into redis; retrying as standby");
                active.release(true).await;
                continue;
            }
            Err(error) => {
                active.release(false).await;
                metrics::lease_held(false);
                return Err(error.into());
            }
        }
        match term.run(active.store()).await {
            Ok(Ended::Fenced) => {
                metrics::lease_lost();
                active.give_up("the session loop stopped").await;
            }
            Ok(Ended::Shutdown) => {
                active.release(false).await;
                metrics::lease_held(false);
                return Ok(());
            }
            Err(error) => {
                active.release(false).await;
                metrics::lease_held(false);
                return Err(error);
            }
        }
    }
}
