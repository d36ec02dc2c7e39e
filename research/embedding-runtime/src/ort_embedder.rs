//! all-MiniLM-L6-v2 with ONNX Runtime via `ort` 2.x (`load-dynamic`): libonnxruntime.so from the PyPI
//! `onnxruntime` wheel, found through ORT_DYLIB_PATH (or passed explicitly). The graph (model.onnx,
//! written by build_onnx.py) already does mean pooling + L2 normalisation: output [B,384].
use std::path::Path;
use std::sync::Mutex;

use anyhow::{anyhow, Result};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use tokenizers::{Tokenizer, TruncationParams};

pub const MAX_PIECES: usize = 256; // sentence-transformers max_seq_length, incl. [CLS]/[SEP]
pub const DIM: usize = 384;

pub struct Embedder {
    tok: Tokenizer,
    // Session::run needs &mut self; one run at a time (intra-op threads parallelise inside a run)
    session: Mutex<Session>,
    pub max_batch: usize,
}

impl Embedder {
    /// `threads`: intra-op threads (1 or 2 on this machine); `opt`: "0".."3" (disable/basic/extended/all)
    pub fn new(model_dir: &Path, max_batch: usize, threads: usize, opt: &str) -> Result<Self> {
        let mut tok = Tokenizer::from_file(model_dir.join("tokenizer.json")).map_err(|e| anyhow!(e))?;
        // tokenizer.json ships padding Fixed(128) and truncation 128: override both.
        tok.with_padding(None);
        tok.with_truncation(Some(TruncationParams { max_length: MAX_PIECES, ..Default::default() }))
            .map_err(|e| anyhow!(e))?;
        let lib = std::env::var("ORT_DYLIB_PATH").map_err(|_| anyhow!("set ORT_DYLIB_PATH to libonnxruntime.so.*"))?;
        let env = ort::init_from(&lib)?.with_name("embed").build()?;
        let level = match opt {
            "0" => GraphOptimizationLevel::Disable,
            "1" => GraphOptimizationLevel::Level1,
            "2" => GraphOptimizationLevel::Level2,
            _ => GraphOptimizationLevel::All,
        };
        let session = Session::builder(&env)?
            .with_optimization_level(level).map_err(|e| anyhow!("{e}"))?
            .with_intra_threads(threads).map_err(|e| anyhow!("{e}"))?
            .with_inter_threads(1).map_err(|e| anyhow!("{e}"))?
            // don't busy-spin the worker between runs: the service does other work on 2 cores
            .with_intra_op_spinning(std::env::var("ORT_SPIN").is_ok()).map_err(|e| anyhow!("{e}"))?
            .commit_from_file(model_dir.join("model.onnx"))?;
        Ok(Self { tok, session: Mutex::new(session), max_batch: max_batch.max(1) })
    }

    pub fn embed(&self, texts: &[&str]) -> Vec<Vec<f32>> {
        self.try_embed(texts).expect("embedding failed")
    }

    pub fn try_embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.tok.encode(*t, true).map(|e| e.get_ids().to_vec()).map_err(|e| anyhow!(e)))
            .collect::<Result<_>>()?;
        // batch by length: sort longest first, cut into groups of max_batch; padding only within a group
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let mut out = vec![Vec::new(); ids.len()];
        let mut session = self.session.lock().map_err(|_| anyhow!("poisoned"))?;
        for group in order.chunks(self.max_batch) {
            let seq = ids[group[0]].len();
            let b = group.len();
            let mut flat = vec![0i64; b * seq];
            let mut mask = vec![0i64; b * seq];
            for (r, &i) in group.iter().enumerate() {
                for (k, &id) in ids[i].iter().enumerate() {
                    flat[r * seq + k] = id as i64;
                    mask[r * seq + k] = 1;
                }
            }
            let outputs = session.run(ort::inputs![
                "input_ids" => Tensor::from_array(([b, seq], flat))?,
                "attention_mask" => Tensor::from_array(([b, seq], mask))?,
            ])?;
            let (_, v) = outputs["sentence_embedding"].try_extract_tensor::<f32>()?;
            for (r, &i) in group.iter().enumerate() {
                out[i] = v[r * DIM..(r + 1) * DIM].to_vec();
            }
        }
        Ok(out)
    }
}
