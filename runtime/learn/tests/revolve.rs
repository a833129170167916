//! Binomial checkpointing: reverse order, snapshot bound and optimal recomputation counts.

use std::cell::Cell;
use std::rc::Rc;

use npdec_learn::revolve::{
    default_snapshots, minimal_forward_steps, reverse_with_checkpoints, schedule,
    snapshots_for_memory, Action, ReverseError,
};

/// Computes the minimal number of forward steps by exhaustive dynamic programming over every first split,
/// independent of the closed form: `F(1, s) = 0`, `F(l, 0) = ∞` for `l > 1`, and
/// `F(l, s) = min_j j + F(l − j, s − 1) + F(j, s)`.
fn brute_force_table(max_steps: usize, max_snapshots: usize) -> Vec<Vec<u64>> {
    let infinite = u64::MAX / 4;
    let mut table = vec![vec![infinite; max_snapshots + 1]; max_steps + 1];
    for row in table.iter_mut().take(2) {
        row.iter_mut().for_each(|v| *v = 0);
    }
    for l in 2..=max_steps {
        for s in 1..=max_snapshots {
            table[l][s] = (1..l)
                .map(|j| j as u64 + table[l - j][s - 1] + table[j][s])
                .min()
                .unwrap();
        }
    }
    table
}

/// A state that counts how many copies of it are alive.
#[derive(Debug)]
struct CountedState {
    step: usize,
    alive: Rc<Cell<usize>>,
    peak: Rc<Cell<usize>>,
}

impl CountedState {
    fn new(step: usize, alive: Rc<Cell<usize>>, peak: Rc<Cell<usize>>) -> Self {
        alive.set(alive.get() + 1);
        peak.set(peak.get().max(alive.get()));
        CountedState { step, alive, peak }
    }
}

impl Clone for CountedState {
    fn clone(&self) -> Self {
        CountedState::new(self.step, self.alive.clone(), self.peak.clone())
    }
}

impl Drop for CountedState {
    fn drop(&mut self) {
        self.alive.set(self.alive.get() - 1);
    }
}

#[test]
fn closed_form_matches_brute_force() {
    let table = brute_force_table(80, 8);
    let optimum = |l: usize, s: usize| table[l][s];
    for l in 1..=80 {
        for s in 1..=8 {
            assert_eq!(
                minimal_forward_steps(l, s),
                Some(optimum(l, s) as u128),
                "{l} steps, {s} snapshots"
            );
        }
    }
}

#[test]
fn schedule_reverses_each_step_once_in_order() {
    for steps in 1..=60 {
        for snapshots in 1..=7 {
            let mut reversed = Vec::new();
            let stats = reverse_with_checkpoints(
                0usize,
                steps,
                snapshots,
                |i, state: &mut usize| {
                    assert_eq!(*state, i, "forward step {i} from the wrong state");
                    *state += 1;
                    Ok::<(), String>(())
                },
                |i, state: &usize| {
                    assert_eq!(*state, i, "reverse step {i} from the wrong state");
                    reversed.push(i);
                    Ok(())
                },
            )
            .unwrap();
            let expected: Vec<usize> = (0..steps).rev().collect();
            assert_eq!(reversed, expected, "{steps} steps, {snapshots} snapshots");
            assert_eq!(stats.reverse_steps, steps as u64);
            assert!(stats.peak_snapshots <= snapshots);
        }
    }
}

#[test]
fn forward_steps_equal_binomial_optimum() {
    let table = brute_force_table(100, 6);
    let optimum = |l: usize, s: usize| table[l][s];
    for steps in 1..=100 {
        for snapshots in 1..=6 {
            let stats = reverse_with_checkpoints(
                (),
                steps,
                snapshots,
                |_, _| Ok::<(), ()>(()),
                |_, _| Ok(()),
            )
            .unwrap();
            assert_eq!(
                stats.forward_steps,
                optimum(steps, snapshots),
                "{steps} steps, {snapshots} snapshots"
            );
        }
    }
}

#[test]
fn no_step_runs_forward_more_than_r_times() {
    for steps in 2..=120 {
        for snapshots in 1..=6 {
            // r is the smallest integer with C(s + r, s) ≥ l.
            let (mut r, mut binomial) = (0u64, 1u64);
            while binomial < steps as u64 {
                r += 1;
                binomial = binomial * (snapshots as u64 + r) / r;
            }
            let mut runs = vec![0u64; steps];
            reverse_with_checkpoints(
                (),
                steps,
                snapshots,
                |i, _| {
                    runs[i] += 1;
                    Ok::<(), ()>(())
                },
                |_, _| Ok(()),
            )
            .unwrap();
            let most = runs.iter().copied().max().unwrap();
            assert!(
                most <= r,
                "{steps} steps, {snapshots} snapshots: a step ran {most} times, r = {r}"
            );
        }
    }
}

#[test]
fn live_states_never_exceed_snapshots_plus_working() {
    for (steps, snapshots) in [(1, 1), (10, 1), (10, 3), (50, 4), (200, 8), (64, 64)] {
        let alive = Rc::new(Cell::new(0));
        let peak = Rc::new(Cell::new(0));
        let initial = CountedState::new(0, alive.clone(), peak.clone());
        reverse_with_checkpoints(
            initial,
            steps,
            snapshots,
            |_, state: &mut CountedState| {
                state.step += 1;
                Ok::<(), ()>(())
            },
            |i, state: &CountedState| {
                assert_eq!(state.step, i);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(alive.get(), 0, "every state is dropped at the end");
        // A restore clones a snapshot before the old working state is dropped, hence + 2.
        assert!(
            peak.get() <= snapshots.min(steps) + 2,
            "{steps} steps, {snapshots} snapshots: {} states alive at once",
            peak.get()
        );
    }
}

#[test]
fn schedule_uses_valid_slots_and_restores_filled_ones() {
    for (steps, snapshots) in [(30, 3), (100, 5), (7, 2)] {
        let actions = schedule(steps, snapshots).unwrap();
        let mut slots: Vec<Option<usize>> = vec![None; snapshots];
        let mut working = Some(0);
        for action in actions {
            match action {
                Action::Snapshot { slot, step } => {
                    assert!(slot < snapshots);
                    assert_eq!(working, Some(step));
                    slots[slot] = Some(step);
                }
                Action::Advance { from, to } => {
                    assert_eq!(working, Some(from));
                    assert!(to > from);
                    working = Some(to);
                }
                Action::FirstTurn { step } => {
                    assert_eq!(step, steps - 1);
                    assert_eq!(working, Some(step));
                    working = None;
                }
                Action::YouTurn { step } => {
                    assert_eq!(working, Some(step));
                    working = None;
                }
                Action::Restore { slot, step } => {
                    assert_eq!(slots[slot], Some(step), "restore of an empty or stale slot");
                    working = Some(step);
                }
            }
        }
    }
}

#[test]
fn large_chain_schedules_quickly() {
    let steps = 100_000;
    let snapshots = default_snapshots(steps);
    assert_eq!(snapshots, 18);
    let actions = schedule(steps, snapshots).unwrap();
    let forward: usize = actions
        .iter()
        .map(|a| match a {
            Action::Advance { from, to } => to - from,
            _ => 0,
        })
        .sum();
    assert_eq!(
        Some(forward as u128),
        minimal_forward_steps(steps, snapshots)
    );
}

#[test]
fn default_snapshot_counts() {
    assert_eq!(default_snapshots(0), 1);
    assert_eq!(default_snapshots(1), 1);
    assert_eq!(default_snapshots(2), 2);
    assert_eq!(default_snapshots(1000), 11);
    assert_eq!(default_snapshots(1024), 11);
    assert_eq!(default_snapshots(1025), 12);
    assert_eq!(minimal_forward_steps(1000, 11), Some(3545));
}

#[test]
fn memory_budget_snapshot_counts() {
    assert_eq!(snapshots_for_memory(1000, 8 << 20, 100 << 20).unwrap(), 12);
    assert_eq!(snapshots_for_memory(5, 8, 1 << 20).unwrap(), 5);
    assert!(snapshots_for_memory(1000, 8 << 20, 1 << 20).is_err());
    assert!(snapshots_for_memory(1000, 0, 1 << 20).is_err());
}

#[test]
fn zero_snapshots_and_zero_steps() {
    assert!(schedule(5, 0).is_err());
    assert_eq!(schedule(0, 0).unwrap(), Vec::new());
    assert_eq!(schedule(1, 3).unwrap().len(), 2);
    let result = reverse_with_checkpoints(0, 5, 0, |_, _| Ok::<(), ()>(()), |_, _| Ok(()));
    assert!(matches!(result, Err(ReverseError::Schedule(_))));
}

#[test]
fn step_errors_stop_the_reversal() {
    let mut reversed = 0;
    let result = reverse_with_checkpoints(
        0,
        10,
        3,
        |i, state: &mut usize| {
            *state += 1;
            if i == 8 {
                Err(format!("step {i} diverged"))
            } else {
                Ok(())
            }
        },
        |_, _| {
            reversed += 1;
            Ok(())
        },
    );
    assert_eq!(
        result,
        Err(ReverseError::Step("step 8 diverged".to_string()))
    );
    assert_eq!(reversed, 0);
}
