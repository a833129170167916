//! Seeded Gaussian samples for the robustness study and the tests. The generator is ChaCha8, so a
//! seed gives the same numbers on every platform.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded source of standard normal samples (Box–Muller transform of two uniform samples).
pub struct GaussianSource {
    rng: ChaCha8Rng,
    spare: Option<f64>,
}

impl GaussianSource {
    /// Creates a source whose samples depend only on `seed`.
    pub fn new(seed: u64) -> Self {
        GaussianSource {
            rng: ChaCha8Rng::seed_from_u64(seed),
            spare: None,
        }
    }

    /// Draws a uniform sample in the open interval (0, 1).
    pub fn uniform(&mut self) -> f64 {
        // The top 53 bits give every double in [0, 1) with spacing 2^-53; the half-step offset keeps
        // the sample away from 0, where the logarithm of Box–Muller diverges.
        ((self.rng.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// Draws a standard normal sample.
    pub fn standard_normal(&mut self) -> f64 {
        if let Some(value) = self.spare.take() {
            return value;
        }
        let radius = (-2.0 * self.uniform().ln()).sqrt();
        let angle = std::f64::consts::TAU * self.uniform();
        self.spare = Some(radius * angle.sin());
        radius * angle.cos()
    }
}
