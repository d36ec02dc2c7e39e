//! all-MiniLM-L6-v2 with candle (CPU, f32), `candle_transformers::models::bert`.
use std::path::Path;

use anyhow::{anyhow, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationParams};

pub const MAX_PIECES: usize = 256; // sentence-transformers max_seq_length, incl. [CLS]/[SEP]

pub struct Embedder {
    tok: Tokenizer,
    model: BertModel,
    device: Device,
    pub max_batch: usize,
}

impl Embedder {
    pub fn new(model_dir: &Path, max_batch: usize) -> Result<Self> {
        let mut tok = Tokenizer::from_file(model_dir.join("tokenizer.json")).map_err(|e| anyhow!(e))?;
        // tokenizer.json ships padding Fixed(128) and truncation 128: override both.
        tok.with_padding(None);
        tok.with_truncation(Some(TruncationParams { max_length: MAX_PIECES, ..Default::default() }))
            .map_err(|e| anyhow!(e))?;
        let device = Device::Cpu;
        let cfg: Config = serde_json::from_str(&std::fs::read_to_string(model_dir.join("config.json"))?)?;
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[model_dir.join("model.safetensors")], DType::F32, &device)? };
        let model = BertModel::load(vb, &cfg)?;
        Ok(Self { tok, model, device, max_batch: max_batch.max(1) })
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
        for group in order.chunks(self.max_batch) {
            let seq = ids[group[0]].len();
            let b = group.len();
            let mut flat = vec![0u32; b * seq];
            let mut mask = vec![0f32; b * seq];
            for (r, &i) in group.iter().enumerate() {
                flat[r * seq..r * seq + ids[i].len()].copy_from_slice(&ids[i]);
                mask[r * seq..r * seq + ids[i].len()].fill(1.0);
            }
            let input = Tensor::from_vec(flat, (b, seq), &self.device)?;
            let mask = Tensor::from_vec(mask, (b, seq), &self.device)?;
            let types = input.zeros_like()?;
            let hidden = self.model.forward(&input, &types, Some(&mask))?; // [b, seq, 384]
            let m = mask.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&m)?.sum(1)?; // [b, 384]
            let counts = m.sum(1)?.clamp(1e-9, f32::MAX)?;
            let mean = summed.broadcast_div(&counts)?;
            let norm = mean.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
            let v: Vec<Vec<f32>> = mean.broadcast_div(&norm)?.to_vec2()?;
            for (r, &i) in group.iter().enumerate() {
                out[i] = v[r].clone();
            }
        }
        Ok(out)
    }
}
