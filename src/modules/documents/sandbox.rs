//! Untrusted documents are parsed and chunked in a child process of this binary (the hidden
//! `parse-document` subcommand), never in the server: the child limits its own CPU time and
//! address space (`setrlimit`) before it reads the document, the parent kills it when it runs
//! past its wall-clock limit (or is dropped: shutdown, a cancelled job), and whatever a parser
//! does — loop, balloon, crash — ends with that process and a readable reason, while the server
//! and its other work go on. The child sees no environment (no secrets) and talks only through
//! its pipes: the document on stdin, one JSON answer on stdout.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::core::config::DocumentSettings;
use crate::core::embeddings::TokenUnit;

use super::chunking::{Chunk, MAX_BYTES_PER_TOKEN, chunk_sections};
use super::parsing::{self, DocumentFormat, ParseLimits};

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "parse-document";

/// What the child is asked to do with the document on its stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseRequest {
    pub format: DocumentFormat,
    pub chunk_size: usize,
    pub chunk_overlap: usize,
    /// More chunks than this fail the document (a tiny chunk size on a large file).
    pub max_chunks: usize,
    /// How far the file may expand while it is read (zip bombs, endless PDFs).
    pub limits: ParseLimits,
    /// What chunk sizes count: the active embedder's tokens.
    pub unit: TokenUnit,
}

/// The child's limits on itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildLimits {
    pub cpu_secs: u64,
    pub memory_mb: u64,
}

/// The child's one answer on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum ChildAnswer {
    Parsed {
        chunks: Vec<Chunk>,
        metadata: Map<String, Value>,
    },
    /// The document cannot be read; the reason is for people.
    Refused { reason: String },
}

/// A parsed and chunked document.
#[derive(Debug)]
pub struct Parsed {
    pub chunks: Vec<Chunk>,
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// The document itself is the problem (unreadable, too big, too slow): permanent, and the
    /// message is the document's failure reason.
    #[error("{0}")]
    Document(String),
    /// The child could not be run or answered nonsense: worth another attempt.
    #[error("{0}")]
    Failed(String),
}

// ------------------------------------------------------------------------------------------------
// The child
// ------------------------------------------------------------------------------------------------

/// `avatar-platform parse-document ...`: limits itself, reads the document from stdin, writes
/// one [`ChildAnswer`] to stdout. Exit code 0 whenever it answered (a refused document
/// included); anything else — a signal, an abort, a panic — is for the parent to explain.
pub fn run_child(request: ParseRequest, limits: ChildLimits) -> ExitCode {
    die_with_parent();
    if let Err(error) = limit_self(limits) {
        eprintln!("parse-document: cannot set resource limits: {error}");
        return ExitCode::from(3);
    }
    let mut bytes = Vec::new();
    if let Err(error) = std::io::stdin().lock().read_to_end(&mut bytes) {
        eprintln!("parse-document: cannot read the document: {error}");
        return ExitCode::from(3);
    }
    let answer = match parse_and_chunk(&request, &bytes) {
        Ok(parsed) => ChildAnswer::Parsed {
            chunks: parsed.chunks,
            metadata: parsed.metadata,
        },
        Err(reason) => ChildAnswer::Refused { reason },
    };
    let mut stdout = std::io::stdout().lock();
    let written = serde_json::to_writer(&mut stdout, &answer)
        .map_err(std::io::Error::from)
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("parse-document: cannot write the answer: {error}");
            ExitCode::from(3)
        }
    }
}

/// The work itself, also what the tests of the formats call.
pub fn parse_and_chunk(request: &ParseRequest, bytes: &[u8]) -> Result<Parsed, String> {
    let parsed =
        parsing::parse(request.format, bytes, request.limits).map_err(|error| error.to_string())?;
    let chunks = chunk_sections(
        &parsed.sections,
        request.chunk_size,
        request.chunk_overlap,
        &request.unit,
    )
    .map_err(|error| error.to_string())?;
    if chunks.len() > request.max_chunks {
        return Err(format!(
            "the document makes {} chunks at a chunk size of {} tokens, more than the {} \
             allowed per document; split it or raise the avatar's chunk size",
            chunks.len(),
            request.chunk_size,
            request.max_chunks
        ));
    }
    if chunks.is_empty() {
        return Err("no text could be extracted".to_owned());
    }
    Ok(Parsed {
        chunks,
        metadata: parsed.metadata,
    })
}

/// A parser must not outlive the server that started it (kill -9 of the server): the kernel
/// kills the child when its parent dies.
fn die_with_parent() {
    #[cfg(target_os = "linux")]
    {
        let parent = std::os::unix::process::parent_id();
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers and touches no memory of ours.
        let set = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        // The parent may have died before the request was made (we were re-parented). The
        // parent itself may be PID 1 (the server in a container), so compare, don't test 1.
        if set != 0 || std::os::unix::process::parent_id() != parent {
            std::process::exit(4);
        }
    }
}

fn limit_self(limits: ChildLimits) -> std::io::Result<()> {
    use rlimit::Resource;
    // The soft limit sends SIGXCPU, the hard one (a second later) SIGKILL.
    Resource::CPU.set(limits.cpu_secs, limits.cpu_secs + 1)?;
    let bytes = limits.memory_mb.saturating_mul(1024 * 1024);
    Resource::AS.set(bytes, bytes)?;
    // A crashing parser leaves no core file behind.
    Resource::CORE.set(0, 0)
}

// ------------------------------------------------------------------------------------------------
// The parent
// ------------------------------------------------------------------------------------------------

/// Runs the child for each document.
#[derive(Debug, Clone)]
pub struct Sandbox {
    program: PathBuf,
    limits: ChildLimits,
    timeout: Duration,
}

/// Most of the child's stderr kept to explain a crash.
const MAX_STDERR_BYTES: usize = 16 * 1024;

/// Bounds of the child's answer: bytes per token of chunk text (UTF-8, JSON-escaped), and
/// bytes of JSON around each chunk (ordinal, page, metadata).
const CHUNK_FRAMING_BYTES: usize = 4 * 1024;

impl Sandbox {
    /// The child is `documents.parser_program`, or this very executable when that is empty.
    pub fn new(settings: &DocumentSettings) -> Result<Sandbox, String> {
        let program = if settings.parser_program.trim().is_empty() {
            std::env::current_exe()
                .map_err(|error| format!("cannot find the running executable: {error}"))?
        } else {
            PathBuf::from(settings.parser_program.trim())
        };
        Ok(Sandbox {
            program,
            limits: ChildLimits {
                cpu_secs: settings.parse_cpu_secs,
                memory_mb: settings.parse_memory_mb,
            },
            timeout: Duration::from_secs(settings.parse_timeout_secs),
        })
    }

    /// Parses and chunks `bytes` in a child. Dropping the future kills the child.
    pub async fn parse(
        &self,
        request: &ParseRequest,
        bytes: Vec<u8>,
    ) -> Result<Parsed, SandboxError> {
        let mut command = tokio::process::Command::new(&self.program);
        // Its own process group: a Ctrl-C or a signal to the server's group is for the
        // server to handle (it stops the run and requeues the document), not for the child.
        #[cfg(unix)]
        command.process_group(0);
        let mut child = command
            .arg(SUBCOMMAND)
            .args(["--format", request.format.as_str()])
            .args(["--chunk-size", &request.chunk_size.to_string()])
            .args(["--chunk-overlap", &request.chunk_overlap.to_string()])
            .args(["--max-chunks", &request.max_chunks.to_string()])
            .args([
                "--docx-max-uncompressed-bytes",
                &request.limits.docx_max_uncompressed_bytes.to_string(),
            ])
            .args(["--pdf-max-pages", &request.limits.pdf_max_pages.to_string()])
            .args(match &request.unit {
                TokenUnit::Cl100k => vec![],
                TokenUnit::WordPieces(tokenizer) => {
                    vec![OsStr::new("--tokenizer"), tokenizer.as_os_str()]
                }
            })
            .args(["--cpu-secs", &self.limits.cpu_secs.to_string()])
            .args(["--memory-mb", &self.limits.memory_mb.to_string()])
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                tracing::error!(program = %self.program.display(), "cannot start the document parser: {error}");
                SandboxError::Failed("the document parser could not be started".into())
            })?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(SandboxError::Failed(
                "the parser's pipes are missing".into(),
            ));
        };
        // What the server holds of the answer: as much text as the chunks may carry (a token
        // is a few bytes; JSON escaping at most doubles them) plus each chunk's framing.
        let max_output = request
            .max_chunks
            .saturating_mul(
                request.chunk_size.saturating_mul(MAX_BYTES_PER_TOKEN) + CHUNK_FRAMING_BYTES,
            )
            .saturating_add(CHUNK_FRAMING_BYTES);
        let work = async {
            let feed = async move {
                // A child that dies early closes the pipe: its exit status tells why.
                let _ = stdin.write_all(&bytes).await;
                drop(stdin);
            };
            let ((), output, errors, status) = tokio::join!(
                feed,
                read_bounded(stdout, max_output),
                read_bounded(stderr, MAX_STDERR_BYTES),
                child.wait()
            );
            (output, errors, status)
        };
        let (output, errors, status) = match tokio::time::timeout(self.timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                let _ = child.kill().await;
                return Err(SandboxError::Document(format!(
                    "parsing took longer than {} s and was stopped",
                    self.timeout.as_secs()
                )));
            }
        };
        let status = status.map_err(|error| {
            tracing::error!("waiting for the document parser failed: {error}");
            SandboxError::Failed("the document parser could not be run".into())
        })?;
        let (output, overflowed) = output.map_err(|error| {
            tracing::error!("reading the document parser failed: {error}");
            SandboxError::Failed("the document parser could not be run".into())
        })?;
        if overflowed {
            return Err(SandboxError::Document(format!(
                "the document's text is larger than {} MB once extracted",
                max_output / (1024 * 1024)
            )));
        }
        let errors = String::from_utf8_lossy(&errors.map(|(bytes, _)| bytes).unwrap_or_default())
            .trim()
            .to_owned();
        if !status.success() {
            return Err(self.explain(status, &errors));
        }
        match serde_json::from_slice::<ChildAnswer>(&output) {
            Ok(ChildAnswer::Parsed { chunks, metadata }) => Ok(Parsed { chunks, metadata }),
            Ok(ChildAnswer::Refused { reason }) => Err(SandboxError::Document(reason)),
            Err(error) => {
                tracing::error!("the document parser's answer is unreadable: {error}");
                Err(SandboxError::Failed(
                    "the document parser gave no usable answer".into(),
                ))
            }
        }
    }

    /// Why a child ended without answering, in words for the document's owner; the details
    /// go to the log.
    fn explain(&self, status: std::process::ExitStatus, errors: &str) -> SandboxError {
        use std::os::unix::process::ExitStatusExt;
        tracing::warn!(%status, stderr = errors, "the document parser stopped without an answer");
        let signal = status.signal();
        // Stopped from outside (a shutdown, an operator): nothing to hold against the file.
        if matches!(
            signal,
            Some(libc::SIGTERM) | Some(libc::SIGINT) | Some(libc::SIGHUP)
        ) {
            return SandboxError::Failed("the document parser was stopped".into());
        }
        if signal == Some(libc::SIGXCPU) {
            return SandboxError::Document(format!(
                "parsing used more than {} s of CPU time and was stopped",
                self.limits.cpu_secs
            ));
        }
        if signal == Some(libc::SIGKILL) {
            // The CPU limit's hard stop, or the kernel's out-of-memory killer.
            return SandboxError::Document(format!(
                "parsing exceeded its limits ({} s of CPU time, {} MB of memory) and was stopped",
                self.limits.cpu_secs, self.limits.memory_mb
            ));
        }
        if errors.contains("memory allocation") || errors.contains("out of memory") {
            return SandboxError::Document(format!(
                "parsing needed more than {} MB of memory and was stopped",
                self.limits.memory_mb
            ));
        }
        if matches!(status.code(), Some(3) | Some(4)) {
            // It could not set itself up: not the document's fault.
            return SandboxError::Failed("the document parser could not be started".into());
        }
        SandboxError::Document("the parser crashed on this file".to_owned())
    }
}

/// Reads `reader` to its end, keeping at most `limit` bytes; says whether there was more.
async fn read_bounded(
    mut reader: impl AsyncRead + Unpin,
    limit: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut buffer = vec![0_u8; 64 * 1024];
    let mut overflowed = false;
    loop {
        let read = reader.read(&mut buffer).await?;
        if read == 0 {
            return Ok((kept, overflowed));
        }
        if kept.len() + read > limit {
            overflowed = true;
            // Keep draining so the child is not blocked on a full pipe; it is stopped anyway.
            continue;
        }
        kept.extend_from_slice(&buffer[..read]);
    }
}
