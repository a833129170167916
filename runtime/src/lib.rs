//! The reference interpreter and time integration.
