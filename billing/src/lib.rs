//! AWS pricing for the emulator: the price list ([`prices`]), usage as AWS meters and names it
//! ([`usage`]), and Cost Explorer's view of what it cost ([`report`]), on a UTC calendar
//! ([`calendar`]). Pure functions over domain types: the control plane meters resources into
//! [`usage::Segment`]s and keeps them; this crate says what they cost.

pub mod calendar;
pub mod clock;
pub mod commitments;
pub mod prices;
pub mod report;
pub mod spot;
pub mod usage;

/// What billing refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillingError {
    /// A price list that does not parse or is inconsistent.
    #[error("price list: {0}")]
    PriceList(String),
    /// Nothing in the price list for this.
    #[error("no price for {0}")]
    NoPrice(String),
    /// A date that is not `YYYY-MM-DD` or `YYYY-MM-DDThh:mm:ssZ`.
    #[error("invalid date: {0}")]
    InvalidDate(String),
    /// A question Cost Explorer would refuse (its ValidationException).
    #[error("{0}")]
    Invalid(String),
}
