//! Rows as the store hands them over, and their mapping to domain types.

use domain::{Alert, Role, SecurityEvent, Timestamp, User, UserId, Username};

use crate::StoreError;

/// A user and the password hash only the login use case reads.
#[derive(Clone)]
pub struct UserRecord {
    pub user: User,
    pub password_hash: String,
    /// The password was chosen by an administrator: its holder must choose
    /// their own at the next sign-in before doing anything else.
    pub must_change_password: bool,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("user", &self.user)
            .field("password_hash", &"[REDACTED]")
            .field("must_change_password", &self.must_change_password)
            .finish()
    }
}

/// A user about to be created.
pub struct NewUserRecord {
    pub id: UserId,
    pub username: Username,
    pub role: Role,
    pub password_hash: String,
    /// Whether the holder must choose their own password at the first
    /// sign-in (the password was chosen by an administrator).
    pub must_change_password: bool,
}

/// A server-side session. Only hashes of the session token and a MAC of the
/// CSRF token are stored, so a copy of the table opens no session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub token_hash: String,
    /// `None` for a pre-login session (it carries only a CSRF token).
    pub user_id: Option<UserId>,
    pub csrf_tag: String,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub stage: SessionStage,
    /// The role the account had when the session was issued (`None` before
    /// sign-in). A session whose account's role is no longer this one is
    /// refused: a sign-in that raced a role change cannot outlive it.
    pub issued_role: Option<Role>,
}

/// Who makes an administrator's change to an account. The store checks it
/// again inside the change's transaction (where changes to accounts are
/// serialized): an administrator demoted or deactivated by a change that
/// committed first makes no more changes, so two administrators demoting
/// each other at the same moment cannot both succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangedBy {
    /// The operator, at the command line (or the server itself).
    Operator,
    /// The account's own holder, changing their own account.
    Holder,
    /// The administrator with this account.
    Admin(UserId),
}

/// The second factor a sign-in spends (see `Store::start_session`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactor<'a> {
    /// A code from the authenticator, of this time step: recorded as the
    /// last accepted one, if it is later than the one stored.
    Step(i64),
    /// A recovery code, by its MAC: marked used, if it is unused.
    RecoveryCode(&'a str),
}

/// How far a session's sign-in got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStage {
    /// Signed in (or a pre-login session, which has no user).
    Full,
    /// The password was right; a TOTP or recovery code must follow.
    Totp,
    /// The password was right; the policy requires enrolling in two-factor
    /// sign-in before anything else.
    Enrol,
    /// Signed in with every factor, but the password was chosen by an
    /// administrator: the holder chooses their own before anything else.
    Password,
}

impl SessionStage {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStage::Full => "full",
            SessionStage::Totp => "totp",
            SessionStage::Enrol => "enrol",
            SessionStage::Password => "password",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(SessionStage::Full),
            "totp" => Some(SessionStage::Totp),
            "enrol" => Some(SessionStage::Enrol),
            "password" => Some(SessionStage::Password),
            _ => None,
        }
    }
}

/// Login failures in the current window, for the account and for the IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailureWindow {
    pub account: i64,
    pub account_oldest: Option<Timestamp>,
    pub ip: i64,
    pub ip_oldest: Option<Timestamp>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    pub id: String,
    pub username: String,
    pub role: String,
    pub password_hash: String,
    pub active: bool,
    pub created_at: i64,
    pub must_change_password: bool,
}

impl TryFrom<UserRow> for UserRecord {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<Self, StoreError> {
        Ok(UserRecord {
            user: user_of(&r.id, &r.username, &r.role, r.active, r.created_at)?,
            password_hash: r.password_hash,
            must_change_password: r.must_change_password,
        })
    }
}

/// A user from the columns of its row; `Corrupt`, naming the user, when
/// one does not parse.
fn user_of(
    id: &str,
    username: &str,
    role: &str,
    active: bool,
    created_at: i64,
) -> Result<User, StoreError> {
    let corrupt = |e: domain::ParseError| StoreError::Corrupt(format!("user {id}: {e}"));
    Ok(User {
        id: id.parse().map_err(corrupt)?,
        username: Username::parse(username).map_err(corrupt)?,
        role: role.parse().map_err(corrupt)?,
        active,
        created_at: Timestamp(created_at),
    })
}

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    pub token_hash: String,
    pub user_id: Option<String>,
    pub csrf_tag: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub stage: String,
    pub issued_role: Option<String>,
}

impl TryFrom<SessionRow> for SessionRecord {
    type Error = StoreError;
    fn try_from(r: SessionRow) -> Result<Self, StoreError> {
        let user_id = match r.user_id {
            Some(id) => Some(
                id.parse::<UserId>()
                    .map_err(|e| StoreError::Corrupt(format!("session user: {e}")))?,
            ),
            None => None,
        };
        let issued_role = match r.issued_role {
            Some(role) => Some(
                role.parse::<Role>()
                    .map_err(|e| StoreError::Corrupt(format!("session role: {e}")))?,
            ),
            None => None,
        };
        Ok(SessionRecord {
            token_hash: r.token_hash,
            user_id,
            csrf_tag: r.csrf_tag,
            created_at: Timestamp(r.created_at),
            last_seen_at: Timestamp(r.last_seen_at),
            stage: SessionStage::parse(&r.stage)
                .ok_or_else(|| StoreError::Corrupt(format!("session stage {:?}", r.stage)))?,
            issued_role,
        })
    }
}

/// A session row joined with its user's row (absent for a pre-login session).
#[derive(sqlx::FromRow)]
pub(crate) struct SessionUserRow {
    #[sqlx(flatten)]
    pub session: SessionRow,
    pub username: Option<String>,
    pub role: Option<String>,
    pub active: Option<bool>,
    pub user_created_at: Option<i64>,
}

/// The session whose token hash is `$1`, with its user.
pub(crate) const SESSION_USER_SQL: &str = "SELECT s.token_hash, s.user_id, s.csrf_tag, \
     s.created_at, s.last_seen_at, s.stage, s.issued_role, u.username, u.role, u.active, \
     u.created_at AS user_created_at \
     FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1";

/// A row read by its key — the reads every request makes. On PostgreSQL it
/// comes through sqlx (`sqlx::FromRow`, by column name); on SQLite from a
/// connection of `sqlite_inline`, whose rows this reads column by column,
/// by position: `COLUMNS` names them in the order read, and a test
/// prepares each read's SQL and checks that it selects exactly those
/// columns in that order (finding a column by its name cost every request
/// dozens of string comparisons).
pub(crate) trait KeyedRow: Sized {
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "the test that checks each read's SQL reads it")
    )]
    const COLUMNS: &'static [&'static str];
    fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
}

/// `KeyedRow` for a flat row: each field read from the column of its name,
/// which is at the field's position.
macro_rules! keyed_row {
    ($row:ty { $($field:ident),+ $(,)? }) => {
        impl crate::records::KeyedRow for $row {
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),+];
            fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                // Fields are read in the order written: 0, 1, 2, …
                let mut columns = 0..;
                let mut next = || columns.next().unwrap_or(usize::MAX);
                Ok(Self {
                    $($field: r.get(next())?),+
                })
            }
        }
    };
}
pub(crate) use keyed_row;

/// The patient record a user account is linked to (patients' accounts).
#[derive(sqlx::FromRow)]
pub(crate) struct LinkedPatientRow {
    pub patient_id: Option<String>,
}

/// The record linked to the user whose id is `$1`.
pub(crate) const LINKED_PATIENT_SQL: &str = "SELECT patient_id FROM users WHERE id = $1";

keyed_row!(LinkedPatientRow { patient_id });

impl KeyedRow for SessionUserRow {
    const COLUMNS: &'static [&'static str] = &[
        "token_hash",
        "user_id",
        "csrf_tag",
        "created_at",
        "last_seen_at",
        "stage",
        "issued_role",
        "username",
        "role",
        "active",
        "user_created_at",
    ];
    fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            session: SessionRow {
                token_hash: r.get(0)?,
                user_id: r.get(1)?,
                csrf_tag: r.get(2)?,
                created_at: r.get(3)?,
                last_seen_at: r.get(4)?,
                stage: r.get(5)?,
                issued_role: r.get(6)?,
            },
            username: r.get(7)?,
            role: r.get(8)?,
            active: r.get(9)?,
            user_created_at: r.get(10)?,
        })
    }
}

impl SessionUserRow {
    pub(crate) fn split(self) -> Result<(SessionRecord, Option<User>), StoreError> {
        let user = match (
            &self.session.user_id,
            self.username,
            self.role,
            self.active,
            self.user_created_at,
        ) {
            (Some(id), Some(username), Some(role), Some(active), Some(created_at)) => {
                Some(user_of(id, &username, &role, active, created_at)?)
            }
            _ => None,
        };
        Ok((SessionRecord::try_from(self.session)?, user))
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub referer: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl From<EventRow> for SecurityEvent {
    fn from(r: EventRow) -> Self {
        SecurityEvent {
            seq: r.seq,
            at: Timestamp(r.at),
            kind: r.kind,
            user_id: r.user_id,
            username: r.username,
            ip: r.ip,
            user_agent: r.user_agent,
            referer: r.referer,
            method: r.method,
            path: r.path,
            detail: r.detail,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AlertRow {
    pub id: i64,
    pub rule: String,
    pub subject: String,
    pub created_at: i64,
    pub detail: String,
}

impl From<AlertRow> for Alert {
    fn from(r: AlertRow) -> Self {
        Alert {
            id: r.id,
            rule: r.rule,
            subject: r.subject,
            created_at: Timestamp(r.created_at),
            detail: r.detail,
        }
    }
}
