//! Heights a snapshot download is paging, kept from the pruner for a while
//! (review S3: a peer that pruned the snapshot's height while a node paged
//! it made every large install fail once it took longer than the retention
//! window).
//!
//! A node catching up asks its peer to pin the certified height it pages
//! (`POST /v1/snapshot/pin`) and every range proof it asks for at that
//! height renews the pin. While a height is pinned the pruner keeps it and
//! everything above it (the certificate, the block records and the tree
//! version at that height). Anyone reaching the API can pin, so the pins are
//! bounded: at most [`MAX_PINS`] heights at once (a new height is refused
//! when all are taken; the download then runs as if unpinned), each dropped
//! [`PIN_IDLE`] after its last renewal and [`PIN_MAX_AGE`] after it was first
//! taken, however often it is renewed. So pins hold back at most
//! [`PIN_MAX_AGE`] of history beyond the window: a new pin is taken only
//! for a height the node keeps anyway (inside its window), so a height that
//! aged out of its pin cannot be pinned again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Heights pinned at once. Only the lowest live pin holds the pruner back,
/// and no pin outlives [`PIN_MAX_AGE`], so their number bounds memory only
/// (about 40 bytes each): it is large so that an outsider holding pins
/// cannot deny them to honest catch-ups (review-3 SNAP-1: with 4 slots, one
/// client renewing 4 pins kept every honest download unpinned); filling it
/// takes 65,536 renewals a minute.
pub const MAX_PINS: usize = 65_536;
/// A pin not renewed for this long is dropped.
pub const PIN_IDLE: Duration = Duration::from_secs(60);
/// A pin is dropped this long after it was taken, renewed or not.
pub const PIN_MAX_AGE: Duration = Duration::from_secs(20 * 60);

#[derive(Debug, Clone, Copy)]
struct Pin {
    taken: Instant,
    renewed: Instant,
}

impl Pin {
    fn live(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.renewed) < PIN_IDLE
            && now.saturating_duration_since(self.taken) < PIN_MAX_AGE
    }
}

/// Why a pin was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PinRefused {
    /// Every slot holds another live height.
    #[error("{MAX_PINS} heights are pinned already")]
    Full,
    /// Below the heights this node keeps without pins.
    #[error("below the retention window")]
    Pruned,
}

/// The pinned heights, shared by the API and the pruner.
#[derive(Debug, Clone, Default)]
pub struct Pins(Arc<Mutex<BTreeMap<u64, Pin>>>);

impl Pins {
    /// Pin `height` (or renew its pin) at `now`; a new pin only at or
    /// above `kept`, the lowest height the node keeps without pins. Returns
    /// how long it stays pinned without renewal.
    pub fn pin(&self, height: u64, kept: u64, now: Instant) -> Result<Duration, PinRefused> {
        let mut pins = self.0.lock().expect("pins lock");
        match pins.get_mut(&height) {
            Some(p) if p.live(now) => p.renewed = now,
            _ => {
                pins.remove(&height);
                if height < kept {
                    return Err(PinRefused::Pruned);
                }
                if pins.len() >= MAX_PINS {
                    // Expired pins are dropped lazily, only when they are
                    // in the way (a pass over all of them per new pin would
                    // cost O(MAX_PINS) per request).
                    pins.retain(|_, p| p.live(now));
                    if pins.len() >= MAX_PINS {
                        return Err(PinRefused::Full);
                    }
                }
                pins.insert(
                    height,
                    Pin {
                        taken: now,
                        renewed: now,
                    },
                );
            }
        }
        let p = pins[&height];
        let left = PIN_MAX_AGE.saturating_sub(now.saturating_duration_since(p.taken));
        Ok(left.min(PIN_IDLE))
    }

    /// Renew `height`'s pin if it has one (a page of it was asked for);
    /// never takes a new slot.
    pub fn renew(&self, height: u64, now: Instant) {
        let mut pins = self.0.lock().expect("pins lock");
        if let Some(p) = pins.get_mut(&height) {
            if p.live(now) {
                p.renewed = now;
            }
        }
    }

    /// The lowest height pinned at `now`.
    pub fn lowest(&self, now: Instant) -> Option<u64> {
        let mut pins = self.0.lock().expect("pins lock");
        pins.retain(|_, p| p.live(now));
        pins.keys().next().copied()
    }

    /// The committed height the pruner may act on with a window of
    /// `window` heights: low enough that nothing at or above the lowest
    /// pinned height is pruned (the pruner removes heights below
    /// `committed + 1 - window`).
    pub fn hold(&self, committed: u64, window: u64, now: Instant) -> u64 {
        match self.lowest(now) {
            Some(pinned) => committed.min(pinned.saturating_add(window.max(1)) - 1),
            None => committed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_holds_the_pruner_below_its_height_until_it_expires() {
        let pins = Pins::default();
        let t0 = Instant::now();
        assert_eq!(pins.hold(1000, 20, t0), 1000, "nothing pinned");
        assert_eq!(pins.pin(500, 490, t0), Ok(PIN_IDLE));
        // Window 20: the pruner removes below committed + 1 - 20, so it may
        // act as if at 519 (removes below 500), not beyond.
        assert_eq!(pins.hold(1000, 20, t0), 519);
        assert_eq!(pins.hold(510, 20, t0), 510, "below the pin: unchanged");
        // Renewed by a page before it goes idle: still held.
        let t1 = t0 + PIN_IDLE - Duration::from_secs(1);
        pins.renew(500, t1);
        assert_eq!(pins.hold(1000, 20, t1 + Duration::from_secs(30)), 519);
        // Not renewed: dropped.
        assert_eq!(pins.hold(1000, 20, t1 + PIN_IDLE), 1000);
        // An expired pin is not revived by a page.
        pins.renew(500, t1 + PIN_IDLE);
        assert_eq!(pins.lowest(t1 + PIN_IDLE), None);
    }

    /// Review-3 SNAP-1: with 4 slots, one outsider renewing 4 pins kept
    /// every honest download unpinned. Slots are now many (only the lowest
    /// pin costs disk): an honest pin beside a thousand others is taken.
    #[test]
    fn pins_held_by_an_outsider_do_not_deny_an_honest_pin() {
        let pins = Pins::default();
        let t0 = Instant::now();
        for h in 0..1000u64 {
            assert!(pins.pin(100 + h, 90, t0).is_ok());
        }
        assert!(pins.pin(5000, 90, t0 + Duration::from_secs(1)).is_ok());
        assert_eq!(pins.lowest(t0), Some(100), "only the lowest pin holds disk");
    }

    #[test]
    fn pins_are_bounded_in_number_and_in_age() {
        let pins = Pins::default();
        let t0 = Instant::now();
        for h in 0..MAX_PINS as u64 {
            assert!(pins.pin(100 + h, 90, t0).is_ok());
        }
        assert_eq!(pins.pin(95, 90, t0), Err(PinRefused::Full));
        // The same height is renewed, not a new slot.
        assert!(pins.pin(100, 90, t0).is_ok());
        // Renewed every 30 s, a pin still ends after PIN_MAX_AGE.
        let mut t = t0;
        while t < t0 + PIN_MAX_AGE - Duration::from_secs(30) {
            t += Duration::from_secs(30);
            // The window moved past it meanwhile: renewal still holds it.
            assert!(pins.pin(100, 5000, t).is_ok(), "at {:?}", t - t0);
        }
        let end = t0 + PIN_MAX_AGE;
        assert_eq!(pins.lowest(end), None, "every pin is past its age");
        // Once ended, below the window, it cannot be pinned again.
        assert_eq!(pins.pin(100, 5000, end), Err(PinRefused::Pruned));
        // Slots freed by expiry are taken again.
        assert!(pins.pin(5007, 5000, end).is_ok());
        assert_eq!(pins.lowest(end), Some(5007));
    }
}
