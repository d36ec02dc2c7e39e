//! all-MiniLM-L6-v2 with tract (tract-onnx) on model.onnx from build_onnx.py (pooling + L2 in-graph).
use std::path::Path;

use anyhow::{anyhow, Result};
use tokenizers::{Tokenizer, TruncationParams};
use tract_onnx::prelude::*;

pub const MAX_PIECES: usize = 256;
pub const DIM: usize = 384;

type Plan = std::sync::Arc<TypedRunnableModel>;

pub struct Embedder {
    tok: Tokenizer,
    model: Plan,
    pub max_batch: usize,
}

impl Embedder {
    pub fn new(model_dir: &Path, max_batch: usize, threads: usize) -> Result<Self> {
        let mut tok = Tokenizer::from_file(model_dir.join("tokenizer.json")).map_err(|e| anyhow!(e))?;
        tok.with_padding(None);
        tok.with_truncation(Some(TruncationParams { max_length: MAX_PIECES, ..Default::default() }))
            .map_err(|e| anyhow!(e))?;
        if threads > 1 {
            tract_linalg::multithread::set_default_executor(tract_linalg::multithread::Executor::multithread(threads));
        }
        let path = std::env::var("TRACT_MODEL").map(std::path::PathBuf::from).unwrap_or(model_dir.join("model.onnx"));
        let mut model = tract_onnx::onnx().model_for_path(path)?;
        let b = model.symbols.sym("batch");
        let s = model.symbols.sym("seq");
        model.set_input_fact(0, i64::fact(&[b.to_dim(), s.to_dim()]).into())?;
        model.set_input_fact(1, i64::fact(&[b.to_dim(), s.to_dim()]).into())?;
        let model = model.into_optimized()?.into_runnable()?;
        Ok(Self { tok, model, max_batch: max_batch.max(1) })
    }

    pub fn embed(&self, texts: &[&str]) -> Vec<Vec<f32>> {
        self.try_embed(texts).expect("embedding failed")
    }

    pub fn try_embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.tok.encode(*t, true).map(|e| e.get_ids().to_vec()).map_err(|e| anyhow!(e)))
            .collect::<Result<_>>()?;
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let mut out = vec![Vec::new(); ids.len()];
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
            let flat = Tensor::from_shape(&[b, seq], &flat)?;
            let mask = Tensor::from_shape(&[b, seq], &mask)?;
            let res = self.model.run(tvec!(flat.into(), mask.into()))?;
            let view = res[0].to_plain_array_view::<f32>()?;
            let v = view.as_slice().ok_or_else(|| anyhow!("non-contiguous output"))?;
            for (r, &i) in group.iter().enumerate() {
                out[i] = v[r * DIM..(r + 1) * DIM].to_vec();
            }
        }
        Ok(out)
    }
}
