//! Reading a password at a terminal without showing it.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context, Result};
use rustix::termios::{LocalModes, OptionalActions, Termios, tcgetattr, tcsetattr};
use secrecy::SecretString;

/// While it lives, the terminal on standard input does not echo what is
/// typed (except the final newline); dropped, the terminal is as it was.
struct NoEcho {
    was: Termios,
}

impl NoEcho {
    fn on() -> Result<Self> {
        let stdin = std::io::stdin();
        let was = tcgetattr(&stdin).context("reading the terminal's settings")?;
        let mut quiet = was.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        quiet.local_modes.insert(LocalModes::ECHONL);
        tcsetattr(&stdin, OptionalActions::Now, &quiet)
            .context("turning the terminal's echo off")?;
        Ok(Self { was })
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        // Nothing more can be done if this fails; `stty sane` restores it.
        let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, &self.was);
    }
}

/// One line of standard input, without its line ending. At a terminal the
/// person is asked for it on standard error and what they type is not
/// shown; piped in, it is read as it comes.
pub fn read_secret_line(prompt: &str) -> Result<SecretString> {
    let stdin = std::io::stdin();
    let mut line = zeroize::Zeroizing::new(String::new());
    if stdin.is_terminal() {
        // Echo off before the prompt shows: nothing typed after it is seen.
        let _quiet = NoEcho::on()?;
        eprint!("{prompt}: ");
        std::io::stderr().flush().ok();
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the password from the terminal")?;
    } else {
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
    }
    Ok(SecretString::from(
        line.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}
