//! Vellum's domain: pure types and rules, no I/O.
//!
//! Everything a request carries is parsed into these types at the edge, so an
//! invalid username, role or event can not travel further into the system.

pub mod access;
pub mod audit;
pub mod letter;
pub mod patient;
pub mod safety;
pub mod time;
pub mod user;

pub use audit::{Alert, ChainHasher, NewSecurityEvent, SecurityEvent, SecurityEventKind};
pub use letter::{LetterBody, LetterId, LetterRuleError, LetterStatus, LetterTitle};
pub use patient::{
    Address, BirthDate, ContactPoint, Demographics, FieldError, Gender, HumanName, NhsNumber,
    PatientId, fold_for_search,
};
pub use time::Timestamp;
pub use user::{ParseError, Role, User, UserId, Username};
