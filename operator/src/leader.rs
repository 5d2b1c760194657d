//! Leader election through a `coordination.k8s.io` Lease, so two operator
//! replicas never both reconcile. The holder renews the lease; a replica
//! takes it only when it is free or expired. A leader that fails to renew
//! in time exits, and Kubernetes restarts it as a follower. A leader that
//! stops (SIGTERM: a rollout, its pod deleted) releases the lease, and the
//! waiting replicas, which watch it, take it at once.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::Client;

/// Lease timing.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a lease is valid without renewal.
    pub duration: Duration,
    /// How often the holder renews (well under `duration`).
    pub renew_every: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }
}

/// Whether `me` may take (or keep) a lease in state `spec` at `now`.
pub fn may_hold(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> bool {
    let Some(spec) = spec else {
        return true;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => true,
        Some(holder) if holder == me => true,
        Some(_) => {
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            spec.renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .is_none_or(|t| t.0.as_second() + duration < now.as_second())
        }
    }
}

/// One attempt to take or renew the lease `name`; `true` when held.
pub async fn try_hold(
    api: &Api<Lease>,
    name: &str,
    me: &str,
    timing: Timing,
) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let existing = api.get_opt(name).await?;
    if !may_hold(existing.as_ref().and_then(|l| l.spec.as_ref()), me, now) {
        return Ok(false);
    }
    let held_before = existing
        .as_ref()
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.holder_identity.as_deref())
        == Some(me);
    let mut lease = existing.unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: None,
    });
    let previous = lease.spec.take().unwrap_or_default();
    lease.spec = Some(LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(timing.duration.as_secs() as i32),
        renew_time: Some(MicroTime(now)),
        acquire_time: if held_before {
            previous.acquire_time
        } else {
            Some(MicroTime(now))
        },
        lease_transitions: Some(previous.lease_transitions.unwrap_or(0) + i32::from(!held_before)),
        ..previous
    });
    // resourceVersion makes this a compare-and-swap: a racing replica gets 409.
    let result = if lease.metadata.resource_version.is_some() {
        api.replace(name, &PostParams::default(), &lease).await
    } else {
        api.create(&PostParams::default(), &lease).await
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// This replica's hold on the lease, renewed in the background until it is
/// released.
pub struct Leadership {
    api: Api<Lease>,
    name: String,
    me: String,
    renewal: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Stops renewing and gives the lease up, so another replica takes it
    /// at once instead of after it expires (client-go's `ReleaseOnCancel`):
    /// a rollout or a deleted leader pod hands over in about a second.
    pub async fn release(self) {
        self.renewal.abort();
        match release(&self.api, &self.name, &self.me).await {
            Ok(true) => tracing::info!(lease = %self.name, "lease released"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not release the lease; it expires on its own")
            }
        }
    }
}

/// Empties the holder of lease `name` if it is still `me`; `true` when done.
async fn release(api: &Api<Lease>, name: &str, me: &str) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let Some(spec) = lease
        .spec
        .as_mut()
        .filter(|s| s.holder_identity.as_deref() == Some(me))
    else {
        return Ok(false);
    };
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until this replica holds the lease, then keeps renewing it in the
/// background; the process exits if it loses the lease. A waiting replica
/// watches the Lease and tries again on every change (a release above all),
/// and every `renew_every` for one that expires without a word.
pub async fn lead(
    client: Client,
    namespace: &str,
    name: &str,
    me: &str,
    timing: Timing,
) -> Leadership {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut changes = watcher(api.clone(), config).default_backoff().boxed();
    loop {
        match try_hold(&api, name, me, timing).await {
            Ok(true) => break,
            Ok(false) => tracing::debug!(lease = name, "another replica leads; waiting"),
            Err(e) => tracing::warn!(error = %e, "cannot read the lease"),
        }
        tokio::select! {
            _ = tokio::time::sleep(timing.renew_every) => {}
            _ = changes.next() => {}
        }
    }
    drop(changes);
    tracing::info!(lease = name, identity = me, "leading");
    let renewal = tokio::spawn(renew(api.clone(), name.to_owned(), me.to_owned(), timing));
    Leadership {
        api,
        name: name.to_owned(),
        me: me.to_owned(),
        renewal,
    }
}

/// Renews the lease every `renew_every`; exits the process when another
/// replica has it or it could not be renewed for a whole lease duration.
async fn renew(api: Api<Lease>, name: String, me: String, timing: Timing) {
    let mut last_renewal = std::time::Instant::now();
    loop {
        tokio::time::sleep(timing.renew_every).await;
        match try_hold(&api, &name, &me, timing).await {
            Ok(true) => last_renewal = std::time::Instant::now(),
            Ok(false) => {
                tracing::error!("lost the lease to another replica; exiting");
                std::process::exit(1);
            }
            Err(e) if last_renewal.elapsed() >= timing.duration => {
                tracing::error!(error = %e, "could not renew the lease in time; exiting");
                std::process::exit(1);
            }
            Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_secs_ago: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Timestamp::from_second(Timestamp::now().as_second() - renewed_secs_ago)
                .ok()
                .map(MicroTime),
            ..Default::default()
        }
    }

    #[test]
    fn only_free_own_or_expired_leases_are_taken() {
        let now = Timestamp::now();
        assert!(may_hold(None, "a", now));
        assert!(may_hold(Some(&lease("a", 1)), "a", now));
        assert!(!may_hold(Some(&lease("b", 1)), "a", now));
        assert!(may_hold(Some(&lease("b", 60)), "a", now));
        assert!(may_hold(Some(&LeaseSpec::default()), "a", now));
    }
}
