//! The `vellum` binary from the outside: commands, first start, key file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod backup;
mod cluster;
mod durability;
mod keys;
mod safety;

const BIN: &str = env!("CARGO_BIN_EXE_vellum");
const PASSWORD: &str = "Quartz-harbour-91-lantern";

fn vellum(home: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    vellum_env(home, args, stdin, &[])
}

/// `vellum` with extra environment variables for the child only.
fn vellum_env(
    home: &Path,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(home)
        .env_remove("VELLUM_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `vellum [GLOBAL…] admin create-user` with the test password; must succeed.
fn create_user(home: &Path, global: &[&str], username: &str, role: &str) {
    let mut args = global.to_vec();
    args.extend([
        "admin",
        "create-user",
        "--username",
        username,
        "--role",
        role,
        "--password-stdin",
    ]);
    let (code, _, err) = vellum(home, &args, Some(&format!("{PASSWORD}\n")));
    assert_eq!(code, 0, "creating {username}: {err}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `vellum serve` and returns it with the first lines it printed.
fn serve(home: &Path, port: u16) -> (Server, Vec<String>) {
    serve_with(home, port, &[])
}

fn serve_with(home: &Path, port: u16, extra: &[&str]) -> (Server, Vec<String>) {
    serve_env(home, port, extra, &[])
}

fn serve_env(
    home: &Path,
    port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Server, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .envs(env.iter().copied())
        .current_dir(home)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some((200, _)) = http_get(port, "/api/health") {
            std::thread::sleep(Duration::from_millis(100));
            return (server, rx.try_iter().collect());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("serve did not answer /api/health");
}

#[test]
fn first_start_prints_a_setup_link_and_creates_a_private_key_file_beside_the_data() {
    let home = tempfile::tempdir().unwrap();
    let port = free_port();
    let (server, lines) = serve(home.path(), port);
    let link = lines
        .iter()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("http://127.0.0.1:{port}/setup/"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no setup link in {lines:?}"));
    assert_eq!(link.len(), 43);
    let (status, page) = http_get(port, &format!("/setup/{link}")).unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("name=\"csrf_token\""));
    let (status, body) = http_get(port, "/api/health").unwrap();
    assert_eq!(status, 200);
    assert!(body.ends_with(r#"{"status":"ok"}"#), "{body}");
    drop(server);

    let key = home.path().join("vellum-data.keyring");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(home.path().join("vellum-data/vellum.db").exists());
    let text = std::fs::read_to_string(&key).unwrap();
    let db = std::fs::read(home.path().join("vellum-data/vellum.db")).unwrap();
    let secret_line = text.lines().find(|l| l.contains("root_secret")).unwrap();
    let secret = secret_line.split('"').nth(3).unwrap();
    assert!(
        !String::from_utf8_lossy(&db).contains(secret),
        "the key is not in the database"
    );
}

#[test]
fn create_user_reads_the_password_from_standard_input_only() {
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = vellum(
        home.path(),
        &[
            "admin",
            "create-user",
            "--username",
            "alice",
            "--role",
            "clinician",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created clinician alice"), "{out}");
    let (code, _, err) = vellum(
        home.path(),
        &[
            "admin",
            "create-user",
            "--username",
            "bob",
            "--role",
            "clinician",
            "--password-stdin",
        ],
        Some(""),
    );
    assert_ne!(code, 0);
    assert!(err.contains("no password on standard input"), "{err}");
    let (code, _, err) = vellum(
        home.path(),
        &[
            "admin",
            "create-user",
            "--username",
            "bob",
            "--role",
            "clinician",
            "--password",
            PASSWORD,
        ],
        None,
    );
    assert_ne!(code, 0, "there is no way to pass a password in argv");
    assert!(err.contains("--password"), "{err}");
    let (code, _, err) = vellum(
        home.path(),
        &[
            "admin",
            "create-user",
            "--username",
            "carol",
            "--role",
            "clinician",
            "--password-stdin",
        ],
        Some("password1234\n"),
    );
    assert_ne!(code, 0);
    assert!(err.contains("too easy to guess"), "{err}");
    let (code, _, err) = vellum(
        home.path(),
        &[
            "admin",
            "create-user",
            "--username",
            "alice",
            "--role",
            "clinician",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert_ne!(code, 0);
    assert!(err.contains("already taken"), "{err}");
}

#[test]
fn serve_refuses_to_start_without_the_key_file_once_accounts_exist() {
    let home = tempfile::tempdir().unwrap();
    let (code, _, err) = vellum(
        home.path(),
        &[
            "admin",
            "create-user",
            "--username",
            "alice",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert_eq!(code, 0, "{err}");
    std::fs::remove_file(home.path().join("vellum-data.keyring")).unwrap();
    let (code, _, err) = vellum(
        home.path(),
        &["serve", "--listen", &format!("127.0.0.1:{}", free_port())],
        None,
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("no keyring") && err.contains("Restore the keyring from its backup"),
        "{err}"
    );
    assert!(
        !home.path().join("vellum-data.keyring").exists(),
        "no new key was made over existing data"
    );
}

#[test]
fn key_file_readable_by_others_is_refused() {
    let home = tempfile::tempdir().unwrap();
    vellum(
        home.path(),
        &[
            "admin",
            "create-user",
            "--username",
            "alice",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    let key = home.path().join("vellum-data.keyring");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = vellum(home.path(), &["audit", "verify"], None);
    assert_ne!(code, 0);
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn unknown_configuration_keys_are_an_error() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("vellum.toml"),
        "[auth]\nidle_timeout = 5\n",
    )
    .unwrap();
    let (code, _, err) = vellum(home.path(), &["audit", "verify"], None);
    assert_ne!(code, 0);
    assert!(
        err.contains("unknown field") && err.contains("idle_timeout"),
        "{err}"
    );
    let mut cmd = Command::new(BIN);
    let out = cmd
        .args(["audit", "verify"])
        .current_dir(home.path())
        .env("VELLUM_AUTH__IDLE_TIMEOUT_MINUTE", "5")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn the_operator_changes_a_staff_role_and_never_a_patient_accounts() {
    let home = tempfile::tempdir().unwrap();
    create_user(home.path(), &[], "lead", "clinician");
    create_user(home.path(), &[], "pat", "patient");
    let set = |who: &str, role: &str| {
        vellum(
            home.path(),
            &["admin", "set-role", "--username", who, "--role", role],
            None,
        )
    };
    let (code, out, err) = set("lead", "admin");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("the role of lead"), "{out}");
    assert!(out.contains("is now admin"), "{out}");
    let (code, _, err) = set("pat", "clinician");
    assert_ne!(code, 0);
    assert!(err.contains("patient accounts"), "{err}");
    let (code, _, err) = set("lead", "wizard");
    assert_ne!(code, 0);
    assert!(err.contains("role"), "{err}");
    // lead is the only administrator: not even the operator leaves none.
    let (code, _, err) = set("lead", "clinician");
    assert_ne!(code, 0);
    assert!(err.contains("no active administrator"), "{err}");
    // The change is in the security log, which still verifies; the
    // refused ones wrote nothing.
    let (code, out, err) = vellum(home.path(), &["audit", "verify"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3 rows verified"), "{out}");
}

#[test]
fn audit_verify_reports_an_intact_log_and_one_altered_under_a_seal() {
    let home = tempfile::tempdir().unwrap();
    vellum(
        home.path(),
        &[
            "admin",
            "create-user",
            "--username",
            "alice",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    let (code, out, err) = vellum(home.path(), &["audit", "verify"], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("security log intact: 1 rows verified"),
        "{out}"
    );
    assert!(
        out.contains("access log intact: 0 rows under 0 seals; 0 newer rows not yet sealed"),
        "{out}"
    );
    // Nothing old enough to seal: said, and nothing written.
    let (code, out, err) = vellum(home.path(), &["audit", "seal"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("nothing to seal"), "{out}");
    let (_, out, _) = vellum(home.path(), &["audit", "verify"], None);
    assert!(out.contains("1 rows verified"), "{out}");

    // Three reads of records: sealed by the operator, then one rewritten.
    let db = home.path().join("vellum-data/vellum.db");
    let run = |statements: &[&str]| {
        let url = format!("sqlite://{}", db.display());
        let statements: Vec<String> = statements.iter().map(|s| (*s).to_owned()).collect();
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                for sql in statements {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&pool)
                        .await
                        .unwrap();
                }
                pool.close().await;
            });
    };
    let read = "INSERT INTO access_log (at, username, role, action, resource_type, outcome) \
                VALUES (1, 'alice', 'clinician', 'read', 'Patient', 'ok')";
    run(&[read, read, read]);
    let (code, out, err) = vellum(home.path(), &["audit", "seal"], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("sealed 3 access-log rows (ids after 0 up to 3)"),
        "{out}"
    );
    let (code, out, _) = vellum(home.path(), &["audit", "verify"], None);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("access log intact: 3 rows under 1 seals"),
        "{out}"
    );
    run(&[
        "DROP TRIGGER access_log_no_update",
        "UPDATE access_log SET username = 'mallory' WHERE id = 2",
    ]);
    let (code, out, _) = vellum(home.path(), &["audit", "verify"], None);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("security log intact") && out.contains("access log ALTERED"),
        "{out}"
    );
}

#[test]
fn demo_seed_adds_synthetic_patients_with_test_range_nhs_numbers_and_can_run_twice() {
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = vellum(
        home.path(),
        &[
            "demo",
            "seed",
            "--patients",
            "1500",
            "--letters-per-patient",
            "2",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("seeded 1500 patients and 3000 letters"),
        "{out}"
    );
    assert!(err.contains("100%"), "a progress bar: {err}");
    let (code, out, err) = vellum(
        home.path(),
        &[
            "demo",
            "seed",
            "--patients",
            "10",
            "--letters-per-patient",
            "0",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("seeded 10 patients and 0 letters"), "{out}");
    let (code, out, _) = vellum(home.path(), &["audit", "verify"], None);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operators_temporary_passwords_new_and_reset_are_changed_before_anything_else() {
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = vellum(
        home.path(),
        &[
            "admin",
            "create-user",
            "--username",
            "carol",
            "--role",
            "patient",
            "--password-stdin",
            "--must-change-password",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("the password is temporary"), "{out}");
    create_user(home.path(), &[], "dave", "patient");
    let port = free_port();
    let (_server, _) = serve(home.path(), port);
    let carol = keys::Http::new(port);
    assert_eq!(
        carol.login("carol").await["status"],
        "password_change_required"
    );
    assert_eq!(carol.get_status("/api/auth/me").await, 401);
    let (status, v) = carol
        .post(
            "/api/account/password",
            serde_json::json!({"current_password": PASSWORD, "new_password": "Carols-own-64-teapot"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "ok");
    assert_eq!(carol.get_status("/api/auth/me").await, 200);
    // Without the flag the operator's password is the holder's own.
    let dave = keys::Http::new(port);
    assert_eq!(dave.login("dave").await["status"], "ok");
    // Forgotten: the operator resets it (the server keeps running); Dave's
    // session ends and the new password is temporary.
    let (code, out, err) = vellum(
        home.path(),
        &[
            "admin",
            "reset-password",
            "--username",
            "dave",
            "--password-stdin",
        ],
        Some("Operator-reset-37-saucepan\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("the password of dave"), "{out}");
    assert_eq!(dave.get_status("/api/auth/me").await, 401);
    let dave = keys::Http::new(port);
    dave.get_status("/api/auth/csrf").await;
    let (status, v) = dave
        .post(
            "/api/auth/login",
            serde_json::json!({"username": "dave", "password": "Operator-reset-37-saucepan"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "password_change_required");
    let (code, out, _) = vellum(home.path(), &["audit", "verify"], None);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn the_operator_revokes_every_api_token_of_an_account() {
    let home = tempfile::tempdir().unwrap();
    create_user(home.path(), &[], "lead", "clinician");
    let revoke = |who: &str| {
        vellum(
            home.path(),
            &["admin", "revoke-tokens", "--username", who],
            None,
        )
    };
    let (code, out, err) = revoke("lead");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked 0 API token(s) of lead"), "{out}");
    let (code, _, err) = revoke("nobody");
    assert_ne!(code, 0);
    assert!(
        err.contains("not found") || err.contains("no such"),
        "{err}"
    );
    // Recorded, and the log still verifies.
    let (code, out, err) = vellum(home.path(), &["audit", "verify"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 rows verified"), "{out}");
}

/// At a terminal the password is asked for and not shown: the command runs
/// on a pseudo-terminal, and what it prints there never holds it.
#[test]
fn a_password_typed_at_a_terminal_is_not_shown() {
    use std::io::{Read as _, Write as _};
    use std::os::fd::OwnedFd;

    let home = tempfile::tempdir().unwrap();
    let master =
        rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY)
            .unwrap();
    rustix::pty::grantpt(&master).unwrap();
    rustix::pty::unlockpt(&master).unwrap();
    let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap()
        .into();
    // The terminal echoes as a person's would.
    let modes = rustix::termios::tcgetattr(&slave).unwrap();
    assert!(
        modes
            .local_modes
            .contains(rustix::termios::LocalModes::ECHO)
    );
    let mut child = Command::new(BIN)
        .args([
            "admin",
            "create-user",
            "--username",
            "typist",
            "--role",
            "clinician",
            "--password-stdin",
        ])
        .current_dir(home.path())
        .env_remove("VELLUM_DATABASE_URL")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    // What the terminal shows, read as it comes (the command's side closes
    // when it exits); nothing here waits without a deadline.
    let mut master = std::fs::File::from(master);
    let mut reader = master.try_clone().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let shown = || String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Typed once the prompt is there.
    while !shown().contains("Password (not shown): ") {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("no prompt within a minute: {}", shown());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    master
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the command did not finish within a minute: {}", shown());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The last of its output, once the terminal has passed it on.
    std::thread::sleep(Duration::from_millis(200));
    let shown = shown();
    assert!(status.success(), "{shown}");
    assert!(shown.contains("created clinician typist"), "{shown}");
    assert!(!shown.contains(PASSWORD), "the password was shown: {shown}");
}

/// Anchors kept outside the database show what the chain alone cannot: a
/// log rewritten consistently, or cut back, by someone who could write the
/// database.
#[test]
fn anchors_kept_outside_the_database_show_a_rewritten_or_cut_back_log() {
    let home = tempfile::tempdir().unwrap();
    let anchors = home.path().join("anchors.txt");
    let (code, _, err) = vellum(home.path(), &["audit", "anchor"], None);
    assert_ne!(code, 0);
    assert!(err.contains("nothing to anchor"), "{err}");
    let mut kept = String::from("# anchors of this clinic's security log\n");
    for name in ["alice", "bob"] {
        create_user(home.path(), &[], name, "clinician");
        let (code, out, err) = vellum(home.path(), &["audit", "anchor"], None);
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("vellum-anchor v1 seq="), "{out}");
        assert!(err.contains("keep this line outside the database"), "{err}");
        kept.push_str(&out);
    }
    std::fs::write(&anchors, &kept).unwrap();
    let anchors_arg = anchors.to_str().unwrap();
    let verify = || {
        vellum(
            home.path(),
            &["audit", "verify", "--anchors", anchors_arg],
            None,
        )
    };
    let (code, out, _) = verify();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("anchors held: 2 (the newest at row 2)"),
        "{out}"
    );

    // Someone with the database removes bob's row and writes carol's in
    // its place: a whole, consistent chain, which the chain check accepts.
    let db = home.path().join("vellum-data/vellum.db");
    let url = format!("sqlite://{}", db.display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        for sql in [
            "DROP TRIGGER security_events_no_delete",
            "DELETE FROM security_events WHERE seq = 2",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    });
    let (code, out, _) = verify();
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("security log intact: 1 rows verified"),
        "{out}"
    );
    assert!(
        out.contains("anchor BROKEN: row 2 (anchored at") && out.contains("cut back"),
        "{out}"
    );
    create_user(home.path(), &[], "carol", "clinician");
    let (code, out, _) = verify();
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("security log intact: 2 rows verified"),
        "{out}"
    );
    assert!(
        out.contains("anchor BROKEN: row 2 is not the row anchored") && out.contains("rewritten"),
        "{out}"
    );
    assert!(!out.contains("anchors held"), "{out}");

    // A row changed under the anchors without its stored hash: the chain
    // shows it, and no anchor at or past it is said to hold.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        for sql in [
            "DROP TRIGGER security_events_no_update",
            "UPDATE security_events SET detail = '{}' WHERE seq = 1",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    });
    let (code, out, _) = verify();
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("security log BROKEN at row 1"), "{out}");
    assert!(
        out.contains("anchor NOT VERIFIABLE: row 1 lies at or past the broken row 1"),
        "{out}"
    );
    assert!(!out.contains("anchors held"), "{out}");

    // An anchors file that cannot be read is an error, not an empty list.
    std::fs::write(&anchors, "vellum-anchor v1 seq=two hash=x\n").unwrap();
    let (code, _, err) = verify();
    assert_ne!(code, 0);
    assert!(err.contains("not a readable anchor"), "{err}");
    std::fs::write(&anchors, "nothing here\n").unwrap();
    let (code, _, err) = verify();
    assert_ne!(code, 0);
    assert!(err.contains("holds no anchor line"), "{err}");
}
