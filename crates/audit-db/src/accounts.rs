//! Technician accounts, technician groups and typed settings, stored beside
//! the audit log in the same database. This module only stores and reads
//! them; the rules (password policy, lockout, hashing) live in `gateway`.

use serde::{de::DeserializeOwned, Serialize};
use sqlx::Row;

use crate::error::{db, Error, Result};
use crate::event::Permission;
use crate::store::{on_pool, Store};
use crate::time_us;

/// A technician group: what its members may do and from where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Group {
    /// The group's name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Permissions granted to every session its members run.
    pub permissions: Vec<Permission>,
    /// Networks (CIDR) its members may connect from; empty: anywhere.
    pub ip_allow: Vec<String>,
    /// One consent prompt for the whole session instead of one per action.
    pub single_prompt: bool,
    /// Every session of the group is recorded.
    pub force_recording: bool,
    /// Chat text is kept in the audit log (otherwise only its length).
    pub store_chat: bool,
}

/// What an account may administer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs support sessions.
    Technician,
    /// Also administers accounts, groups and the policy.
    Admin,
    /// Reads and exports the whole log and its recordings; changes nothing
    /// but legal holds (in the web portal).
    Compliance,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Technician => "technician",
            Role::Admin => "admin",
            Role::Compliance => "compliance",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "technician" => Ok(Role::Technician),
            "admin" => Ok(Role::Admin),
            "compliance" => Ok(Role::Compliance),
            other => Err(format!(
                "unknown role {other:?} (technician, admin or compliance)"
            )),
        }
    }
}

/// A technician account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Technician {
    /// Lower case; the account's key.
    pub email: String,
    /// The group it belongs to.
    pub group: String,
    /// What it may administer.
    pub role: Role,
    /// PHC string of the password hash.
    #[serde(skip)]
    pub password_hash: String,
    /// When the password was set (microseconds since the epoch).
    pub password_set_us: i64,
    /// The password must be changed at the next login.
    pub must_change: bool,
    /// A disabled account cannot log in.
    pub disabled: bool,
    /// Consecutive failed logins since the last success or unlock (kept in
    /// `login_attempts`; not written by [`Accounts::add_technician`]).
    pub failed_logins: u32,
    /// Locked until then (microseconds since the epoch; `i64::MAX`: until an admin unlocks).
    pub locked_until_us: Option<i64>,
}

/// Accounts, groups and settings of one database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Accounts {
    store: Store,
}

const GROUP_COLUMNS: &str =
    "name, permissions, ip_allow, single_prompt, force_recording, store_chat";
const TECH_COLUMNS: &str =
    "email, group_name, role, password_hash, password_set_at, must_change, disabled";
/// An account with its failure count and lock, which live in `login_attempts`.
const TECH_SELECT: &str = "SELECT t.email, t.group_name, t.role, t.password_hash, \
     t.password_set_at, t.must_change, t.disabled, \
     COALESCE(a.failed_logins, 0) AS failed_logins, a.locked_until \
     FROM technicians t LEFT JOIN login_attempts a ON a.email = t.email";

macro_rules! group_from_row {
    ($row:expr) => {{
        let row = $row;
        (|| -> Result<GroupRow, sqlx::Error> {
            let permissions: String = row.try_get("permissions")?;
            let ip_allow: String = row.try_get("ip_allow")?;
            let name: String = row.try_get("name")?;
            Ok((
                name,
                permissions,
                ip_allow,
                row.try_get::<bool, _>("single_prompt")?,
                row.try_get::<bool, _>("force_recording")?,
                row.try_get::<bool, _>("store_chat")?,
            ))
        })()
    }};
}

macro_rules! tech_from_row {
    ($row:expr) => {{
        let row = $row;
        (|| -> Result<TechRow, sqlx::Error> {
            Ok(TechRow {
                email: row.try_get("email")?,
                group: row.try_get("group_name")?,
                role: row.try_get("role")?,
                password_hash: row.try_get("password_hash")?,
                password_set_us: row.try_get("password_set_at")?,
                must_change: row.try_get("must_change")?,
                disabled: row.try_get("disabled")?,
                failed_logins: row.try_get("failed_logins")?,
                locked_until_us: row.try_get("locked_until")?,
            })
        })()
    }};
}

type GroupRow = (String, String, String, bool, bool, bool);

struct TechRow {
    email: String,
    group: String,
    role: String,
    password_hash: String,
    password_set_us: i64,
    must_change: bool,
    disabled: bool,
    failed_logins: i64,
    locked_until_us: Option<i64>,
}

impl Accounts {
    /// The accounts kept in `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The group called `name`, if there is one.
    pub async fn group(&self, name: &str) -> Result<Option<Group>> {
        Ok(self.select_groups(Some(name)).await?.pop())
    }

    /// Every group, by name.
    pub async fn groups(&self) -> Result<Vec<Group>> {
        self.select_groups(None).await
    }

    async fn select_groups(&self, name: Option<&str>) -> Result<Vec<Group>> {
        let filter = if name.is_some() {
            "WHERE name = $1"
        } else {
            ""
        };
        let sql = format!("SELECT {GROUP_COLUMNS} FROM tech_groups {filter} ORDER BY name");
        let rows: Vec<GroupRow> = on_pool!(self, pool => {
            let mut query = sqlx::query(&sql);
            if let Some(name) = name {
                query = query.bind(name);
            }
            let rows = query.fetch_all(pool).await.map_err(db("reading groups"))?;
            rows.iter()
                .map(|r| group_from_row!(r))
                .collect::<Result<_, _>>()
                .map_err(db("reading groups"))?
        });
        rows.into_iter().map(decode_group).collect()
    }

    /// Adds a group; fails with [`Error::Exists`] if the name is taken.
    pub async fn add_group(&self, group: &Group) -> Result<()> {
        let now = time_us::now();
        let sql = format!(
            "INSERT INTO tech_groups ({GROUP_COLUMNS}, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"
        );
        let result = on_pool!(self, pool => sqlx::query(&sql)
            .bind(&group.name)
            .bind(join_permissions(&group.permissions))
            .bind(group.ip_allow.join(","))
            .bind(group.single_prompt)
            .bind(group.force_recording)
            .bind(group.store_chat)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ()));
        exists_or(result, "group", &group.name, "adding a group")
    }

    /// Replaces a group's settings; fails with [`Error::NoSuch`] if it does not exist.
    pub async fn update_group(&self, group: &Group) -> Result<()> {
        let sql = "UPDATE tech_groups SET permissions = $2, ip_allow = $3, single_prompt = $4, \
                   force_recording = $5, store_chat = $6, updated_at = $7 WHERE name = $1";
        let n = on_pool!(self, pool => sqlx::query(sql)
            .bind(&group.name)
            .bind(join_permissions(&group.permissions))
            .bind(group.ip_allow.join(","))
            .bind(group.single_prompt)
            .bind(group.force_recording)
            .bind(group.store_chat)
            .bind(time_us::now())
            .execute(pool)
            .await
            .map_err(db("updating a group"))?
            .rows_affected());
        found(n, "group", &group.name)
    }

    /// The account of `email` (compared in lower case), if there is one.
    pub async fn technician(&self, email: &str) -> Result<Option<Technician>> {
        Ok(self
            .select_technicians(Some(&email.to_lowercase()))
            .await?
            .pop())
    }

    /// Every account, by email.
    pub async fn technicians(&self) -> Result<Vec<Technician>> {
        self.select_technicians(None).await
    }

    async fn select_technicians(&self, email: Option<&str>) -> Result<Vec<Technician>> {
        let filter = if email.is_some() {
            "WHERE t.email = $1"
        } else {
            ""
        };
        let sql = format!("{TECH_SELECT} {filter} ORDER BY t.email");
        let rows: Vec<TechRow> = on_pool!(self, pool => {
            let mut query = sqlx::query(&sql);
            if let Some(email) = email {
                query = query.bind(email);
            }
            let rows = query.fetch_all(pool).await.map_err(db("reading accounts"))?;
            rows.iter()
                .map(|r| tech_from_row!(r))
                .collect::<Result<_, _>>()
                .map_err(db("reading accounts"))?
        });
        rows.into_iter().map(decode_technician).collect()
    }

    /// Adds an account; its email is stored in lower case. Fails with
    /// [`Error::Exists`] if taken, [`Error::NoSuch`] if the group is missing.
    pub async fn add_technician(&self, t: &Technician) -> Result<()> {
        if self.group(&t.group).await?.is_none() {
            return Err(Error::NoSuch {
                what: "group",
                name: t.group.clone(),
            });
        }
        let now = time_us::now();
        let sql = format!(
            "INSERT INTO technicians ({TECH_COLUMNS}, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)"
        );
        let email = t.email.to_lowercase();
        let result = on_pool!(self, pool => sqlx::query(&sql)
            .bind(&email)
            .bind(&t.group)
            .bind(t.role.as_str())
            .bind(&t.password_hash)
            .bind(t.password_set_us)
            .bind(t.must_change)
            .bind(t.disabled)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ()));
        exists_or(result, "account", &email, "adding an account")
    }

    /// Sets a new password hash (and whether it must be changed at next login).
    pub async fn set_password(&self, email: &str, hash: &str, must_change: bool) -> Result<()> {
        let now = time_us::now();
        let sql = "UPDATE technicians SET password_hash = $2, password_set_at = $3, \
                   must_change = $4, updated_at = $3 WHERE email = $1";
        let email = email.to_lowercase();
        let n = on_pool!(self, pool => sqlx::query(sql)
            .bind(&email).bind(hash).bind(now).bind(must_change)
            .execute(pool).await.map_err(db("setting a password"))?.rows_affected());
        found(n, "account", &email)
    }

    /// Moves an account to another group or role.
    pub async fn set_group(&self, email: &str, group: &str, role: Role) -> Result<()> {
        if self.group(group).await?.is_none() {
            return Err(Error::NoSuch {
                what: "group",
                name: group.to_owned(),
            });
        }
        let sql =
            "UPDATE technicians SET group_name = $2, role = $3, updated_at = $4 WHERE email = $1";
        let email = email.to_lowercase();
        let n = on_pool!(self, pool => sqlx::query(sql)
            .bind(&email).bind(group).bind(role.as_str()).bind(time_us::now())
            .execute(pool).await.map_err(db("changing an account's group"))?.rows_affected());
        found(n, "account", &email)
    }

    /// Disables or re-enables an account.
    pub async fn set_disabled(&self, email: &str, disabled: bool) -> Result<()> {
        let sql = "UPDATE technicians SET disabled = $2, updated_at = $3 WHERE email = $1";
        let email = email.to_lowercase();
        let n = on_pool!(self, pool => sqlx::query(sql)
            .bind(&email).bind(disabled).bind(time_us::now())
            .execute(pool).await.map_err(db("disabling an account"))?.rows_affected());
        found(n, "account", &email)
    }

    /// Lifts the lock on `email` if it ended at or before `now_us`, and
    /// forgets its failures; returns whether this call lifted one (one of
    /// several concurrent callers does).
    pub async fn lift_expired_lock(&self, email: &str, now_us: i64) -> Result<bool> {
        let sql = "DELETE FROM login_attempts WHERE email = $1 AND locked_until <= $2 \
                   RETURNING email";
        let lifted: Option<String> = on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(email.to_lowercase()).bind(now_us)
            .fetch_optional(pool).await.map_err(db("lifting an expired lock"))?);
        Ok(lifted.is_some())
    }

    /// Counts one password check for `email` (an account or not) as under
    /// way before it runs, unless the failures and checks under way already
    /// reach `threshold` or the email is locked: then `false`, refuse it
    /// unchecked. One statement, so checks that arrive at once can never
    /// outnumber the threshold.
    pub async fn reserve_login(&self, email: &str, threshold: u32, now_us: i64) -> Result<bool> {
        let sql = "INSERT INTO login_attempts \
                   (email, failed_logins, pending_logins, locked_until, updated_at) \
                   VALUES ($1, 0, 1, NULL, $3) \
                   ON CONFLICT (email) DO UPDATE \
                   SET pending_logins = login_attempts.pending_logins + 1, updated_at = $3 \
                   WHERE login_attempts.failed_logins + login_attempts.pending_logins < $2 \
                   AND login_attempts.locked_until IS NULL \
                   RETURNING email";
        let reserved: Option<String> = on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(email.to_lowercase()).bind(i64::from(threshold)).bind(now_us)
            .fetch_optional(pool).await.map_err(db("reserving a login attempt"))?);
        Ok(reserved.is_some())
    }

    /// A reserved check found the password wrong: one more failure, and a
    /// lock until `until_us` (`i64::MAX`: until an administrator unlocks
    /// it) once `threshold` are counted. Returns the count if this call
    /// locked it (exactly one of several concurrent callers does).
    pub async fn login_failed(
        &self,
        email: &str,
        threshold: u32,
        until_us: i64,
        now_us: i64,
    ) -> Result<Option<u32>> {
        let sql = "UPDATE login_attempts SET \
                   pending_logins = CASE WHEN pending_logins > 0 THEN pending_logins - 1 ELSE 0 END, \
                   failed_logins = failed_logins + 1, \
                   locked_until = CASE WHEN failed_logins + 1 >= $2 AND locked_until IS NULL \
                                  THEN $3 ELSE locked_until END, \
                   updated_at = $4 \
                   WHERE email = $1 RETURNING failed_logins";
        let count: Option<i64> = on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(email.to_lowercase()).bind(i64::from(threshold)).bind(until_us).bind(now_us)
            .fetch_optional(pool).await.map_err(db("counting a failed login"))?);
        Ok(count
            .filter(|n| *n == i64::from(threshold))
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    /// A reserved check found the password right: the failures are
    /// forgotten, unless checks under way meanwhile locked the email, which
    /// the lock wins. Returns whether it is locked.
    pub async fn login_succeeded(&self, email: &str, now_us: i64) -> Result<bool> {
        let sql = "UPDATE login_attempts SET \
                   pending_logins = CASE WHEN pending_logins > 0 THEN pending_logins - 1 ELSE 0 END, \
                   failed_logins = CASE WHEN locked_until IS NULL THEN 0 ELSE failed_logins END, \
                   updated_at = $2 \
                   WHERE email = $1 RETURNING locked_until";
        let lock: Option<Option<i64>> = on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(email.to_lowercase()).bind(now_us)
            .fetch_optional(pool).await.map_err(db("clearing failed logins"))?);
        Ok(lock.flatten().is_some())
    }

    /// A reserved check that never ran (the gateway was busy): it no longer counts.
    pub async fn release_login(&self, email: &str, now_us: i64) -> Result<()> {
        let sql = "UPDATE login_attempts SET pending_logins = pending_logins - 1, updated_at = $2 \
                   WHERE email = $1 AND pending_logins > 0";
        on_pool!(self, pool => sqlx::query(sql)
            .bind(email.to_lowercase()).bind(now_us)
            .execute(pool).await.map_err(db("releasing a login attempt"))?.rows_affected());
        Ok(())
    }

    /// Forgets every check counted as under way: at a gateway's start, those
    /// of a gateway that stopped mid-check would otherwise count for ever.
    pub async fn forget_pending_logins(&self) -> Result<()> {
        let sql = "UPDATE login_attempts SET pending_logins = 0 WHERE pending_logins > 0";
        on_pool!(self, pool => sqlx::query(sql)
            .execute(pool).await.map_err(db("forgetting pending logins"))?.rows_affected());
        Ok(())
    }

    /// Clears the lock and the failure count of an account (an
    /// administrator's unlock). Returns whether it was locked.
    pub async fn clear_failures(&self, email: &str) -> Result<bool> {
        let email = email.to_lowercase();
        if self.technician(&email).await?.is_none() {
            return Err(Error::NoSuch {
                what: "account",
                name: email,
            });
        }
        let sql = "DELETE FROM login_attempts WHERE email = $1 RETURNING locked_until";
        let lock: Option<Option<i64>> = on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(&email)
            .fetch_optional(pool).await.map_err(db("clearing failed logins"))?);
        Ok(lock.flatten().is_some())
    }

    /// Forgets the failure counts of emails that have no account and saw no
    /// attempt since `before_us`, unless still locked. Returns how many.
    pub async fn prune_login_attempts(&self, before_us: i64, now_us: i64) -> Result<u64> {
        let sql = "DELETE FROM login_attempts WHERE updated_at < $1 \
                   AND (locked_until IS NULL OR locked_until <= $2) \
                   AND email NOT IN (SELECT email FROM technicians)";
        Ok(on_pool!(self, pool => sqlx::query(sql)
            .bind(before_us).bind(now_us)
            .execute(pool).await.map_err(db("pruning login attempts"))?.rows_affected()))
    }

    /// The setting stored under `key`, decoded from JSON.
    pub async fn setting<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let sql = "SELECT value FROM settings WHERE key = $1";
        let text: Option<String> = on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(key).fetch_optional(pool).await.map_err(db("reading a setting"))?);
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| Error::BadSetting {
                key: key.to_owned(),
                reason: e.to_string(),
            })
        })
        .transpose()
    }

    /// Stores `value` as JSON under `key`.
    pub async fn put_setting<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let text = serde_json::to_string(value).map_err(|e| Error::BadSetting {
            key: key.to_owned(),
            reason: e.to_string(),
        })?;
        let sql = "INSERT INTO settings (key, value) VALUES ($1, $2) \
                   ON CONFLICT (key) DO UPDATE SET value = excluded.value";
        on_pool!(self, pool => sqlx::query(sql)
            .bind(key).bind(&text).execute(pool).await.map_err(db("storing a setting"))?.rows_affected());
        Ok(())
    }
}

fn join_permissions(permissions: &[Permission]) -> String {
    permissions
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The items of a stored comma-separated list.
pub(crate) fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn decode_group(
    (name, permissions, ip_allow, single_prompt, force_recording, store_chat): GroupRow,
) -> Result<Group> {
    let permissions = split_list(&permissions)
        .map(|p| {
            p.parse().map_err(|_| Error::BadSetting {
                key: format!("group {name}"),
                reason: format!("unknown permission {p:?}"),
            })
        })
        .collect::<Result<_>>()?;
    Ok(Group {
        permissions,
        ip_allow: split_list(&ip_allow).map(str::to_owned).collect(),
        name,
        single_prompt,
        force_recording,
        store_chat,
    })
}

fn decode_technician(r: TechRow) -> Result<Technician> {
    let role = r.role.parse().map_err(|reason| Error::BadSetting {
        key: format!("account {}", r.email),
        reason,
    })?;
    Ok(Technician {
        email: r.email,
        group: r.group,
        role,
        password_hash: r.password_hash,
        password_set_us: r.password_set_us,
        must_change: r.must_change,
        disabled: r.disabled,
        failed_logins: u32::try_from(r.failed_logins).unwrap_or(0),
        locked_until_us: r.locked_until_us,
    })
}

pub(crate) fn exists_or(
    result: Result<(), sqlx::Error>,
    what: &'static str,
    name: &str,
    doing: &'static str,
) -> Result<()> {
    match result {
        Err(e) if crate::store::is_unique_violation(&e) => Err(Error::Exists {
            what,
            name: name.to_owned(),
        }),
        other => other.map_err(db(doing)),
    }
}

pub(crate) fn found(rows: u64, what: &'static str, name: &str) -> Result<()> {
    if rows == 0 {
        Err(Error::NoSuch {
            what,
            name: name.to_owned(),
        })
    } else {
        Ok(())
    }
}
