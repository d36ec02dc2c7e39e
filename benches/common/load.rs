//! Load from other processes, as a user's clients and a reference would send it: wrk for HTTP,
//! pgbench for the database reference measured in the same run.

use std::process::Command;

/// How long each wrk and pgbench run lasts.
pub const SECONDS: u32 = 10;

/// What a wrk run did: requests answered 2xx per second, and how many.
pub struct WrkRun {
    pub rate: f64,
    pub requests: u64,
}

/// Runs wrk (2 threads, `connections`, [`SECONDS`]) at `url` with the Lua `script`; fails on
/// any error or non-2xx answer. wrk is a separate process, as pgbench is for the reference.
pub fn wrk(url: &str, connections: usize, script: &str) -> anyhow::Result<WrkRun> {
    wrk_for(url, connections, script, SECONDS)
}

/// [`wrk`] for `seconds`.
pub fn wrk_for(
    url: &str,
    connections: usize,
    script: &str,
    seconds: u32,
) -> anyhow::Result<WrkRun> {
    let file = tempfile::Builder::new().suffix(".lua").tempfile()?;
    let done = r#"
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("WRK %d %d %d %d\n", summary.requests, summary.duration,
        e.status, e.connect + e.read + e.write + e.timeout))
end
"#;
    std::fs::write(file.path(), format!("{script}\n{done}"))?;
    let run = Command::new("wrk")
        .args(["-t", "2", "-c", &connections.to_string()])
        .args(["-d", &format!("{seconds}s"), "-s"])
        .arg(file.path())
        .arg(url)
        .output()
        .map_err(|error| anyhow::anyhow!("wrk ({error}): run `make bench-tools`"))?;
    let out = String::from_utf8_lossy(&run.stdout);
    anyhow::ensure!(run.status.success(), "wrk: {out}");
    let numbers: Vec<u64> = out
        .lines()
        .find_map(|line| line.strip_prefix("WRK "))
        .ok_or_else(|| anyhow::anyhow!("no summary in wrk's output: {out}"))?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [requests, micros, bad_status, failed] = numbers[..] else {
        anyhow::bail!("unreadable wrk summary: {out}");
    };
    anyhow::ensure!(
        bad_status == 0 && failed == 0,
        "wrk: {bad_status} answers not 2xx, {failed} failed: {out}"
    );
    Ok(WrkRun {
        rate: requests as f64 / (micros as f64 / 1e6),
        requests,
    })
}

/// pgbench's TPS at `clients` clients (2 threads) for [`SECONDS`] with `args` (a built-in
/// script such as `["-S"]`, or `["-f", file]`) against `url`.
pub fn pgbench_tps(url: &str, clients: usize, args: &[&str]) -> anyhow::Result<f64> {
    let (clients, seconds) = (clients.to_string(), SECONDS.to_string());
    let run = Command::new(super::pgbench())
        .args(["-n", "-c", &clients, "-j", "2", "-T", &seconds])
        .args(args)
        .arg(url)
        .output()?;
    let out = String::from_utf8_lossy(&run.stdout);
    anyhow::ensure!(
        run.status.success(),
        "pgbench: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let line = out
        .lines()
        .find(|line| line.starts_with("tps ="))
        .ok_or_else(|| anyhow::anyhow!("no tps in pgbench's output: {out}"))?;
    line.trim_start_matches("tps =")
        .split_whitespace()
        .next()
        .and_then(|number| number.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("unreadable pgbench line: {line}"))
}

/// pgbench's TPS for the SQL `script`, one transaction per run of it, prepared (as the app's
/// driver runs statements).
pub fn pgbench_script_tps(url: &str, clients: usize, script: &str) -> anyhow::Result<f64> {
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), script)?;
    let path = file.path().display().to_string();
    pgbench_tps(url, clients, &["-M", "prepared", "-f", &path])
}

/// CPU time (user + system) this process has used so far, in seconds.
pub fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
