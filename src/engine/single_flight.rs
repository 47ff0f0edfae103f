//! In-process single-flight: the first caller for an account leads, later
//! callers wait for its result. (Across processes the database lease does
//! the same job; this saves them the polling.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::domain::AccountId;
use crate::domain::RefreshReport;
use crate::engine::EngineError;

pub type FlightResult = Result<RefreshReport, EngineError>;
type Slot = watch::Receiver<Option<FlightResult>>;

#[derive(Default, Clone)]
pub struct SingleFlight {
    flights: Arc<Mutex<HashMap<AccountId, (u64, Slot)>>>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

pub enum Flight {
    Lead(LeaderGuard),
    Follow(Slot),
}

/// Held by the leader; publishes the result, and on drop (also when the
/// leading task is aborted) removes the flight so followers stop waiting.
pub struct LeaderGuard {
    flights: Arc<Mutex<HashMap<AccountId, (u64, Slot)>>>,
    account: AccountId,
    id: u64,
    sender: watch::Sender<Option<FlightResult>>,
}

impl SingleFlight {
    pub fn join(&self, account: &AccountId) -> Flight {
        let mut flights = self.flights.lock().expect("single-flight map poisoned");
        if let Some((_, slot)) = flights.get(account) {
            return Flight::Follow(slot.clone());
        }
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sender, receiver) = watch::channel(None);
        flights.insert(account.clone(), (id, receiver));
        Flight::Lead(LeaderGuard {
            flights: self.flights.clone(),
            account: account.clone(),
            id,
            sender,
        })
    }
}

impl LeaderGuard {
    pub fn publish(&self, result: &FlightResult) {
        let mut joined = result.clone();
        if let Ok(report) = &mut joined {
            report.joined = true;
        }
        self.sender.send_replace(Some(joined));
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        let mut flights = self.flights.lock().expect("single-flight map poisoned");
        if flights
            .get(&self.account)
            .is_some_and(|(id, _)| *id == self.id)
        {
            flights.remove(&self.account);
        }
    }
}
