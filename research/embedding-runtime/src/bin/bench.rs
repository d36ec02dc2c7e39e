//! bench --backend candle|ort|tract [--threads N] [--batches 1,8,16,32] [--chunks N] [--short-runs N]
//! Checks against reference.json, then measures chunk throughput and short-question latency.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};

enum Backend {
    #[cfg(feature = "candle")]
    Candle(spike_embed::candle_embedder::Embedder),
    #[cfg(feature = "ort")]
    Ort(spike_embed::ort_embedder::Embedder),
    #[cfg(feature = "tract")]
    Tract(spike_embed::tract_embedder::Embedder),
}

impl Backend {
    fn embed(&self, t: &[&str]) -> Vec<Vec<f32>> {
        match self {
            #[cfg(feature = "candle")]
            Backend::Candle(e) => e.embed(t),
            #[cfg(feature = "ort")]
            Backend::Ort(e) => e.embed(t),
            #[cfg(feature = "tract")]
            Backend::Tract(e) => e.embed(t),
        }
    }
    fn set_max_batch(&mut self, b: usize) {
        match self {
            #[cfg(feature = "candle")]
            Backend::Candle(e) => e.max_batch = b,
            #[cfg(feature = "ort")]
            Backend::Ort(e) => e.max_batch = b,
            #[cfg(feature = "tract")]
            Backend::Tract(e) => e.max_batch = b,
        }
    }
}

fn arg(name: &str, default: &str) -> String {
    let a: Vec<String> = std::env::args().collect();
    a.iter().position(|x| x == name).and_then(|i| a.get(i + 1).cloned()).unwrap_or_else(|| default.to_string())
}

fn proc_status(key: &str) -> String {
    std::fs::read_to_string("/proc/self/status").unwrap_or_default().lines()
        .find(|l| l.starts_with(key)).map(|l| l[key.len()..].trim().to_string()).unwrap_or_default()
}

/// (user+sys) CPU seconds of this process
fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // fields after ')' start at index 0 = state (field 3); utime = field 14, stime = field 15
    let ut: f64 = f[11].parse().unwrap();
    let st: f64 = f[12].parse().unwrap();
    (ut + st) / 100.0
}
fn sys_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[12].parse::<f64>().unwrap() / 100.0
}

fn cos(a: &[f32], b: &[f64]) -> f64 {
    let (mut d, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        d += *x as f64 * y; na += (*x as f64).powi(2); nb += y * y;
    }
    d / (na.sqrt() * nb.sqrt())
}

fn main() -> Result<()> {
    let backend = arg("--backend", "candle");
    let threads: usize = arg("--threads", "2").parse()?;
    let batches: Vec<usize> = arg("--batches", "1,8,16,32").split(',').map(|x| x.parse().unwrap()).collect();
    let n_chunks: usize = arg("--chunks", "64").parse()?;
    let short_runs: usize = arg("--short-runs", "200").parse()?;
    let root = PathBuf::from(arg("--root", env!("CARGO_MANIFEST_DIR")));
    let model_dir = root.join("model");
    // candle/gemm read RAYON_NUM_THREADS when their pool is first used
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());

    let t0 = Instant::now();
    let mut be = match backend.as_str() {
        #[cfg(feature = "candle")]
        "candle" => Backend::Candle(spike_embed::candle_embedder::Embedder::new(&model_dir, 32)?),
        #[cfg(feature = "ort")]
        "ort" => Backend::Ort(spike_embed::ort_embedder::Embedder::new(&model_dir, 32, threads, &arg("--opt", "3"))?),
        #[cfg(feature = "tract")]
        "tract" => Backend::Tract(spike_embed::tract_embedder::Embedder::new(&model_dir, 32, threads)?),
        b => bail!("backend {b} not compiled in"),
    };
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;

    // --- correctness vs reference.json: one at a time, and all in one padded batch
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join("reference.json"))?)?;
    let items = r["items"].as_array().unwrap();
    let texts: Vec<&str> = items.iter().map(|i| i["text"].as_str().unwrap()).collect();
    let refs: Vec<Vec<f64>> = items.iter()
        .map(|i| i["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect();
    let mut min_cos = 1f64;
    for (t, rv) in texts.iter().zip(&refs) {
        min_cos = min_cos.min(cos(&be.embed(&[t])[0], rv));
    }
    be.set_max_batch(32);
    for (v, rv) in be.embed(&texts).iter().zip(&refs) {
        min_cos = min_cos.min(cos(v, rv));
    }
    let long_words: Vec<&str> = texts[7].split_whitespace().collect();
    // 256-piece chunks (truncated from ~1700 pieces), each a different rotation of the words
    let chunk_strings: Vec<String> = (0..n_chunks)
        .map(|i| { let k = (i * 7) % long_words.len(); [&long_words[k..], &long_words[..k]].concat().join(" ") })
        .collect();
    let chunks: Vec<&str> = chunk_strings.iter().map(|s| s.as_str()).collect();

    // --- throughput
    let mut thr = Vec::new();
    for &b in &batches {
        be.set_max_batch(b);
        be.embed(&chunks[..b.min(n_chunks)]); // warm-up at this shape
        let (c0, s0, t) = (cpu_secs(), sys_secs(), Instant::now());
        let v = be.embed(&chunks);
        let dt = t.elapsed().as_secs_f64();
        assert_eq!(v.len(), n_chunks);
        let cpu = (cpu_secs() - c0) / dt * 100.0;
        let sys = (sys_secs() - s0) / dt * 100.0;
        thr.push(serde_json::json!({"batch": b, "chunks_per_s": n_chunks as f64 / dt,
            "tokens_per_s": (n_chunks * 256) as f64 / dt, "cpu_pct": cpu, "sys_pct": sys}));
        eprintln!("  batch {b:>2}: {:7.2} chunks/s  {:8.0} tok/s  cpu {cpu:4.0}% (sys {sys:3.0}%)",
            n_chunks as f64 / dt, (n_chunks * 256) as f64 / dt);
    }
    // --- short question latency
    be.set_max_batch(32);
    let q = "How do I reset my password on the website?";
    for _ in 0..20 { be.embed(&[q]); }
    let mut lat = Vec::with_capacity(short_runs);
    let (c0, s0, tq) = (cpu_secs(), sys_secs(), Instant::now());
    for _ in 0..short_runs {
        let t = Instant::now();
        std::hint::black_box(be.embed(&[q]));
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let dtq = tq.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |x: f64| lat[((lat.len() - 1) as f64 * x) as usize];
    let res = serde_json::json!({
        "backend": backend, "threads": threads, "load_ms": load_ms, "min_cos": min_cos,
        "max_cos_dev": 1.0 - min_cos, "throughput": thr,
        "short_p50_ms": p(0.5), "short_p90_ms": p(0.9), "short_p99_ms": p(0.99),
        "short_cpu_pct": (cpu_secs() - c0) / dtq * 100.0, "short_sys_pct": (sys_secs() - s0) / dtq * 100.0,
        "os_threads": proc_status("Threads:"), "peak_rss": proc_status("VmHWM:"),
    });
    eprintln!("  short q: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms | min cos {min_cos:.6} | threads {} | peak RSS {}",
        p(0.5), p(0.9), p(0.99), res["os_threads"], res["peak_rss"]);
    println!("{res}");
    Ok(())
}
