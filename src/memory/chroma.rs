//! A small ChromaDB client over reqwest, v2 API only (`/api/v1` is gone in
//! ChromaDB 1.x): heartbeat; collections (get-or-create, get, list, delete)
//! in a tenant/database; and upsert, query, get, count and delete of records. The server never
//! computes embeddings, so every call that needs vectors carries them.

use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::ChromaConfig;

/// How long one ChromaDB call may take. Local writes take milliseconds; a
/// server that takes longer is treated as down and the work is retried.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A failed ChromaDB call.
#[derive(Debug, thiserror::Error)]
pub enum ChromaError {
    /// Not reachable, timed out, or answered 5xx: retry later.
    #[error("ChromaDB at {url} is unavailable: {detail}")]
    Unavailable { url: String, detail: String },
    /// The collection id we had is not known (deleted or a new server).
    #[error("ChromaDB collection {0} was not found")]
    CollectionGone(String),
    /// A 4xx: our request or the server's state is wrong.
    #[error("ChromaDB at {url} refused the request ({status}): {detail}")]
    Refused { url: String, status: u16, detail: String },
}

/// A collection, as ChromaDB describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Collection {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, Value>>,
    /// The collection's settings (`{"hnsw": {"sync_threshold": …, …}, …}`).
    #[serde(default)]
    pub configuration_json: Option<Value>,
}

impl Collection {
    /// Its HNSW index's `sync_threshold`, when ChromaDB reports one.
    pub fn sync_threshold(&self) -> Option<u64> {
        self.configuration_json.as_ref()?.get("hnsw")?.get("sync_threshold")?.as_u64()
    }
}

/// One record to upsert.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub embedding: Vec<f32>,
    pub document: String,
    pub metadata: serde_json::Map<String, Value>,
}

/// One query hit.
#[derive(Debug, Clone)]
pub struct Hit {
    pub id: String,
    pub document: Option<String>,
    pub metadata: Option<serde_json::Map<String, Value>>,
    pub distance: Option<f32>,
}

/// The client.
#[derive(Debug, Clone)]
pub struct ChromaClient {
    http: reqwest::Client,
    base: String,
    tenant: String,
    database: String,
}

impl ChromaClient {
    pub fn new(http: reqwest::Client, config: &ChromaConfig) -> Self {
        Self {
            http,
            base: config.url.as_str().trim_end_matches('/').to_owned(),
            tenant: config.tenant.clone(),
            database: config.database.clone(),
        }
    }

    fn collections_url(&self) -> String {
        format!("{}/api/v2/tenants/{}/databases/{}/collections", self.base, self.tenant, self.database)
    }

    async fn call(&self, method: reqwest::Method, url: String, body: Option<Value>) -> Result<Value, ChromaError> {
        let mut req = self.http.request(method, &url).timeout(TIMEOUT);
        if let Some(body) = &body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ChromaError::Unavailable { url: self.base.clone(), detail: error_chain(&e) })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| ChromaError::Refused {
                url: self.base.clone(),
                status: status.as_u16(),
                detail: format!("unreadable answer: {e}"),
            });
        }
        let detail: String = text.chars().take(300).collect();
        if status.is_server_error() || status.as_u16() == 429 {
            Err(ChromaError::Unavailable { url: self.base.clone(), detail: format!("{status}: {detail}") })
        } else if status.as_u16() == 404 {
            Err(ChromaError::CollectionGone(url))
        } else {
            Err(ChromaError::Refused { url: self.base.clone(), status: status.as_u16(), detail })
        }
    }

    /// A successful answer whose body is not what the API promises.
    fn unreadable(&self, detail: String) -> ChromaError {
        ChromaError::Refused { url: self.base.clone(), status: 200, detail }
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, v: Value, what: &str) -> Result<T, ChromaError> {
        serde_json::from_value(v).map_err(|e| self.unreadable(format!("unreadable {what}: {e}")))
    }

    /// `GET /api/v2/heartbeat`.
    pub async fn heartbeat(&self) -> Result<(), ChromaError> {
        self.call(reqwest::Method::GET, format!("{}/api/v2/heartbeat", self.base), None).await.map(|_| ())
    }

    /// Gets the collection, creating it with `metadata` and `configuration`
    /// (ChromaDB's collection settings, e.g. `{"hnsw": {…}}`) if it does not
    /// exist. An existing collection keeps (and returns) its original
    /// metadata and settings.
    pub async fn get_or_create(
        &self,
        name: &str,
        metadata: serde_json::Map<String, Value>,
        configuration: Value,
    ) -> Result<Collection, ChromaError> {
        let v = self
            .call(
                reqwest::Method::POST,
                self.collections_url(),
                Some(json!({ "name": name, "get_or_create": true, "metadata": metadata, "configuration": configuration })),
            )
            .await?;
        self.parse(v, "collection")
    }

    /// Changes an existing collection's settings (`PUT …/collections/{id}`
    /// with `new_configuration`). ChromaDB 1.5 records the change at once
    /// and applies HNSW settings when it next loads the collection's index,
    /// i.e. after its next restart.
    pub async fn update_configuration(&self, id: &str, configuration: Value) -> Result<(), ChromaError> {
        self.call(
            reqwest::Method::PUT,
            format!("{}/{id}", self.collections_url()),
            Some(json!({ "new_configuration": configuration })),
        )
        .await
        .map(|_| ())
    }

    /// The collection called `name`; [`ChromaError::CollectionGone`] when
    /// there is none.
    pub async fn get_collection(&self, name: &str) -> Result<Collection, ChromaError> {
        let v = self.call(reqwest::Method::GET, format!("{}/{name}", self.collections_url()), None).await?;
        self.parse(v, "collection")
    }

    /// Every collection of the tenant/database, a page at a time.
    pub async fn list_collections(&self) -> Result<Vec<Collection>, ChromaError> {
        const PAGE: usize = 1_000;
        let mut all = Vec::new();
        loop {
            let url = format!("{}?limit={PAGE}&offset={}", self.collections_url(), all.len());
            let page: Vec<Collection> =
                self.parse(self.call(reqwest::Method::GET, url, None).await?, "collection list")?;
            let last = page.len() < PAGE;
            all.extend(page);
            if last {
                return Ok(all);
            }
        }
    }

    /// Deletes the collection called `name` with all its records; one that
    /// does not exist is already deleted.
    pub async fn delete_collection(&self, name: &str) -> Result<(), ChromaError> {
        match self.call(reqwest::Method::DELETE, format!("{}/{name}", self.collections_url()), None).await {
            Ok(_) | Err(ChromaError::CollectionGone(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Up to `limit` records from `offset` on, with their embeddings (for
    /// moving records between collections).
    pub async fn get_records(&self, collection: &str, limit: usize, offset: usize) -> Result<Vec<Record>, ChromaError> {
        let body = json!({ "include": ["embeddings", "documents", "metadatas"], "limit": limit, "offset": offset });
        let v = self.call(reqwest::Method::POST, self.records_url(collection, "get"), Some(body)).await?;
        let list = |key: &str| v.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
        let (ids, embeddings, documents, metadatas) =
            (list("ids"), list("embeddings"), list("documents"), list("metadatas"));
        ids.iter()
            .enumerate()
            .map(|(i, id)| {
                let unreadable = |what: &str| self.unreadable(format!("record {i} of a page has no readable {what}"));
                let embedding = embeddings
                    .get(i)
                    .and_then(Value::as_array)
                    .and_then(|e| e.iter().map(|x| x.as_f64().map(|x| x as f32)).collect::<Option<Vec<f32>>>())
                    .ok_or_else(|| unreadable("embedding"))?;
                Ok(Record {
                    id: id.as_str().ok_or_else(|| unreadable("id"))?.to_owned(),
                    embedding,
                    document: documents.get(i).and_then(Value::as_str).unwrap_or_default().to_owned(),
                    metadata: metadatas.get(i).and_then(Value::as_object).cloned().unwrap_or_default(),
                })
            })
            .collect()
    }

    fn records_url(&self, collection: &str, op: &str) -> String {
        format!("{}/{}/{}", self.collections_url(), collection, op)
    }

    /// Inserts or replaces records by id.
    pub async fn upsert(&self, collection: &str, records: &[Record]) -> Result<(), ChromaError> {
        let body = json!({
            "ids": records.iter().map(|r| &r.id).collect::<Vec<_>>(),
            "embeddings": records.iter().map(|r| &r.embedding).collect::<Vec<_>>(),
            "documents": records.iter().map(|r| &r.document).collect::<Vec<_>>(),
            "metadatas": records.iter().map(|r| &r.metadata).collect::<Vec<_>>(),
        });
        self.call(reqwest::Method::POST, self.records_url(collection, "upsert"), Some(body)).await.map(|_| ())
    }

    /// The `n` records of the collection nearest to `embedding`.
    pub async fn query(&self, collection: &str, embedding: &[f32], n: usize) -> Result<Vec<Hit>, ChromaError> {
        let body = json!({
            "query_embeddings": [embedding],
            "n_results": n,
            "include": ["documents", "metadatas", "distances"],
        });
        let v = self.call(reqwest::Method::POST, self.records_url(collection, "query"), Some(body)).await?;
        let first =
            |key: &str| v.get(key).and_then(|x| x.get(0)).and_then(Value::as_array).cloned().unwrap_or_default();
        let ids = first("ids");
        let docs = first("documents");
        let metas = first("metadatas");
        let dists = first("distances");
        Ok(ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| {
                Some(Hit {
                    id: id.as_str()?.to_owned(),
                    document: docs.get(i).and_then(Value::as_str).map(str::to_owned),
                    metadata: metas.get(i).and_then(Value::as_object).cloned(),
                    distance: dists.get(i).and_then(Value::as_f64).map(|d| d as f32),
                })
            })
            .collect())
    }

    /// Ids of the collection's records (for tests and diagnostics).
    pub async fn get_ids(&self, collection: &str) -> Result<Vec<String>, ChromaError> {
        let body = json!({ "include": [] });
        let v = self.call(reqwest::Method::POST, self.records_url(collection, "get"), Some(body)).await?;
        Ok(v.get("ids")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default())
    }

    /// How many records the collection holds.
    pub async fn count(&self, collection: &str) -> Result<u64, ChromaError> {
        let v = self.call(reqwest::Method::GET, self.records_url(collection, "count"), None).await?;
        v.as_u64().ok_or_else(|| self.unreadable(format!("count was not a number: {v}")))
    }

    /// Deletes records by id.
    pub async fn delete_ids(&self, collection: &str, ids: &[String]) -> Result<(), ChromaError> {
        self.call(reqwest::Method::POST, self.records_url(collection, "delete"), Some(json!({ "ids": ids })))
            .await
            .map(|_| ())
    }
}

/// An error with its causes, `: `-separated.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// Context helper for callers that want an `anyhow` chain.
pub fn context<T>(r: Result<T, ChromaError>, what: &str) -> anyhow::Result<T> {
    r.map_err(anyhow::Error::new).with_context(|| what.to_owned())
}
