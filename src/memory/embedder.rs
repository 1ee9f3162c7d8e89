//! Embedders: text in, vectors out. ChromaDB never computes embeddings for
//! us (FACTS.md), so every document and query is embedded here.
//!
//! - [`LocalEmbedder`] (the default): hashed character n-grams (1–3) over
//!   normalised text, signed into a fixed number of buckets and
//!   L2-normalised. No network, no downloaded weights, deterministic, and it
//!   works for Hangul and Latin alike because it never tokenises into words
//!   from a vocabulary. It catches shared words and word pieces ("고양이",
//!   "cat"), not meaning.
//! - [`OpenAiEmbedder`]: any OpenAI-compatible `POST {base}/embeddings`
//!   (`EMBEDDING_*`).
//!
//! The embedder's name and dimension are recorded in the ChromaDB collection
//! metadata; vectors of another dimension are refused (see `memory`).

use std::{future::Future, pin::Pin, time::Duration};

use anyhow::Context as _;
use secrecy::ExposeSecret as _;

use crate::config::OpenAiCompatible;

/// A boxed future, so the trait can be used as `dyn Embedder`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The embeddings API could not be reached, timed out, or answered 5xx or
/// 429: the same text may well embed later.
#[derive(Debug, thiserror::Error)]
#[error("the embeddings API at {url} is unavailable: {detail}")]
pub struct Unavailable {
    pub url: String,
    pub detail: String,
}

/// Turns texts into vectors of one dimension.
pub trait Embedder: Send + Sync {
    /// A stable name, recorded in the collection metadata.
    fn name(&self) -> String;
    /// The vector length, when known before the first call.
    fn dimension(&self) -> Option<usize>;
    /// One vector per text, in order.
    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, anyhow::Result<Vec<Vec<f32>>>>;
}

/// Buckets of the built-in embedder: enough that n-grams of a few thousand
/// characters rarely collide, small enough that ChromaDB's index stays light.
pub const LOCAL_DIMENSION: usize = 384;

/// The built-in hashed character n-gram embedder.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalEmbedder;

impl LocalEmbedder {
    /// The vector for one text (deterministic across runs and machines).
    pub fn vector(text: &str) -> Vec<f32> {
        let mut v = vec![0f32; LOCAL_DIMENSION];
        let normalized = normalize(text);
        for word in normalized.split(' ').filter(|w| !w.is_empty()) {
            // Word boundaries count, so "cat" is closer to "cat" than to "concatenate".
            let chars: Vec<char> = std::iter::once(' ').chain(word.chars()).chain(std::iter::once(' ')).collect();
            for n in 1..=3usize {
                // Longer grams say more; unigrams mostly say which script.
                let weight = match n {
                    1 => 0.25,
                    2 => 1.0,
                    _ => 1.5,
                };
                if chars.len() < n {
                    continue;
                }
                for gram in chars.windows(n) {
                    if n == 1 && gram[0] == ' ' {
                        continue;
                    }
                    let h = fnv1a(gram);
                    let bucket = (h % LOCAL_DIMENSION as u64) as usize;
                    let sign = if (h >> 63) & 1 == 0 { 1.0 } else { -1.0 };
                    v[bucket] += sign * weight;
                }
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        } else {
            // Empty text: a fixed unit vector rather than zeros (no NaN anywhere).
            v[0] = 1.0;
        }
        v
    }
}

/// Lowercase letters and digits (any script); everything else separates words.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = true;
    for c in text.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    out
}

/// FNV-1a over the chars' UTF-8: stable, dependency-free.
fn fnv1a(chars: &[char]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = [0u8; 4];
    for c in chars {
        for b in c.encode_utf8(&mut buf).as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    // Final avalanche so that the low bits (the bucket) depend on every byte.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

impl Embedder for LocalEmbedder {
    fn name(&self) -> String {
        "robeing-hashed-ngrams-v1".into()
    }
    fn dimension(&self) -> Option<usize> {
        Some(LOCAL_DIMENSION)
    }
    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, anyhow::Result<Vec<Vec<f32>>>> {
        Box::pin(async move { Ok(texts.iter().map(|t| Self::vector(t)).collect()) })
    }
}

/// How long one embeddings request may take.
const EMBEDDING_TIMEOUT: Duration = Duration::from_secs(30);

/// An OpenAI-compatible embeddings API.
pub struct OpenAiEmbedder {
    http: reqwest::Client,
    config: OpenAiCompatible,
}

impl OpenAiEmbedder {
    pub fn new(http: reqwest::Client, config: OpenAiCompatible) -> Self {
        Self { http, config }
    }
}

#[derive(serde::Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(serde::Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

impl Embedder for OpenAiEmbedder {
    fn name(&self) -> String {
        format!("openai-compatible:{}", self.config.model)
    }
    fn dimension(&self) -> Option<usize> {
        None
    }
    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, anyhow::Result<Vec<Vec<f32>>>> {
        Box::pin(async move {
            let url = format!("{}/embeddings", self.config.base_url.as_str().trim_end_matches('/'));
            let mut req = self
                .http
                .post(&url)
                .timeout(EMBEDDING_TIMEOUT)
                .json(&serde_json::json!({ "model": self.config.model, "input": texts }));
            if let Some(key) = &self.config.api_key {
                req = req.bearer_auth(key.expose_secret());
            }
            let resp = req
                .send()
                .await
                .map_err(|e| Unavailable { url: url.clone(), detail: super::chroma::error_chain(&e) })?;
            let status = resp.status();
            if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                return Err(Unavailable { url, detail: format!("answered {status}") }.into());
            }
            if !status.is_success() {
                anyhow::bail!("the embeddings API at {url} answered {status}");
            }
            let mut body: EmbeddingsResponse =
                resp.json().await.with_context(|| format!("reading the embeddings API's answer from {url}"))?;
            anyhow::ensure!(
                body.data.len() == texts.len(),
                "the embeddings API returned {} vectors for {} texts",
                body.data.len(),
                texts.len()
            );
            body.data.sort_by_key(|d| d.index);
            Ok(body.data.into_iter().map(|d| d.embedding).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn local_vectors_are_deterministic_unit_length_and_fixed_size() {
        for t in ["", "hello", "우리 고양이 이름은 나비야", "\u{202E}abc\0"] {
            let v = LocalEmbedder::vector(t);
            assert_eq!(v.len(), LOCAL_DIMENSION);
            assert_eq!(v, LocalEmbedder::vector(t));
            let n: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((n - 1.0).abs() < 1e-4, "{t:?} has norm {n}");
        }
    }

    #[test]
    fn shared_words_are_closer_than_unrelated_text_in_both_scripts() {
        let cat = LocalEmbedder::vector("my cat is called Nabi");
        let about_cat = LocalEmbedder::vector("cat");
        let weather = LocalEmbedder::vector("the weather in Seoul tomorrow");
        assert!(cos(&cat, &about_cat) > cos(&weather, &about_cat));
        let ko = LocalEmbedder::vector("우리 고양이 이름은 나비야");
        let ko_q = LocalEmbedder::vector("고양이");
        let ko_other = LocalEmbedder::vector("내일 회의는 세 시야");
        assert!(cos(&ko, &ko_q) > cos(&ko_other, &ko_q));
    }
}
