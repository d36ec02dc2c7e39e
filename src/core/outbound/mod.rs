//! The outbound policy: where the server may send requests on someone's behalf, and the HTTP
//! clients that enforce it. Every URL that makes the server call out goes through here — the
//! LLM and embedding endpoints today, Telegram and webhooks later.
//!
//! - A [`BaseUrl`] is an API root: `http` or `https`, a host, no credentials, no query, no
//!   fragment. Endpoints are joined to its path (`{base}/chat/completions`), never concatenated,
//!   so nothing a tenant types can swallow or redirect the path we append.
//! - A URL is [`Trust::Operator`] when the deployment's settings or the saas_admin's platform
//!   config chose it, and [`Trust::Tenant`] when a project did. A tenant's requests may only
//!   reach globally routable addresses: loopback, private, link-local (the cloud metadata
//!   address among them), CGNAT, multicast, documentation and other special-purpose ranges are
//!   refused, for IPv4 and IPv6 alike (IPv4-mapped, -compatible, NAT64 and 6to4 forms are
//!   judged by the IPv4 address they carry) — unless the operator allow-lists the host name or
//!   a network ([`AllowList`]: the setting `outbound.allowed_hosts` plus the platform config's
//!   `outbound_allowed_hosts`).
//! - The check happens on the addresses a name resolves to, inside the client's resolver, and
//!   the connection is made to exactly those addresses: a name that resolves to a public
//!   address when checked and to a private one a moment later (DNS rebinding) cannot slip
//!   through. IP literals, which skip resolution, are checked before the request is sent.
//! - No client follows redirects, and the tenant client ignores proxy variables (a proxy would
//!   resolve names where we cannot check them).

mod address;

pub use address::{AllowList, is_public};

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::Deserialize;
use url::Url;

/// `[outbound]` in the settings.
#[derive(Debug, Clone, Deserialize)]
pub struct OutboundSettings {
    /// Host names and networks (CIDR) that tenant-configured URLs may reach even though they
    /// are private: a self-hosted LLM on the operator's network.
    pub allowed_hosts: Vec<String>,
    /// How long connecting to an outbound endpoint may take.
    pub connect_timeout_secs: u64,
}

/// Who chose a URL, and so how far it is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// The deployment's settings or the saas_admin's platform config: any address.
    Operator,
    /// A project (a secret it set): public addresses and the allow-list only.
    Tenant,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// Not a usable API root; the message says why, for the person who typed it.
    #[error("{0}")]
    InvalidUrl(String),
    /// The destination is not one a tenant may reach.
    #[error("{0}")]
    Refused(Refused),
    #[error("the outbound HTTP client could not be built: {0}")]
    Client(String),
}

/// The error the guarded resolver (and the IP-literal check) gives for a refused destination.
/// Found again in a `reqwest::Error`'s source chain by [`is_refused`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{host}` is refused by the outbound policy: it is (or resolves to) a private, loopback, \
     link-local or otherwise non-public address; an operator can allow it with \
     outbound.allowed_hosts"
)]
pub struct Refused {
    pub host: String,
}

/// The [`Refused`] destination among `error` and its sources, if there is one.
pub fn find_refusal<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(refused) = error.downcast_ref::<Refused>() {
            return Some(refused);
        }
        current = error.source();
    }
    None
}

/// A credential that is sent only to the endpoint it was entered for: the secret named
/// `credential` (e.g. `LLM_API_KEY`) is sealed bound to the value of the secret named
/// `endpoint` (e.g. `LLM_BASE_URL`) at the time it is entered, or to [`PLATFORM_ENDPOINT`]
/// when that is unset. Changing the endpoint orphans the credential until it is entered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretBinding {
    pub credential: &'static str,
    pub endpoint: &'static str,
}

/// The endpoint a credential is bound to when the project set none of its own: whatever
/// endpoint the platform provides (chosen by the operator, who is trusted).
pub const PLATFORM_ENDPOINT: &str = "platform";

/// What a credential entered beside `url` is bound to: the URL's [`BaseUrl::identity`] (its
/// trimmed text when it does not parse, so it binds to nothing else), or [`PLATFORM_ENDPOINT`]
/// when no URL is set.
pub fn endpoint_identity(url: Option<&str>) -> String {
    match url {
        Some(url) => BaseUrl::parse(url)
            .map(|base| base.identity())
            .unwrap_or_else(|_| url.trim().to_owned()),
        None => PLATFORM_ENDPOINT.to_owned(),
    }
}

// ------------------------------------------------------------------------------------------------
// Base URLs
// ------------------------------------------------------------------------------------------------

/// An API root such as `https://api.openai.com/v1`, checked: see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BaseUrl {
    /// Always ends with `/`, so [`BaseUrl::endpoint`] joins below it.
    url: Url,
}

impl BaseUrl {
    pub fn parse(text: &str) -> Result<BaseUrl, OutboundError> {
        let invalid = |reason: &str| OutboundError::InvalidUrl(reason.to_owned());
        let text = text.trim();
        let mut url = Url::parse(text).map_err(|error| {
            OutboundError::InvalidUrl(format!(
                "is not a URL ({error}); write it like https://host/v1"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("must be an http or https URL"));
        }
        if url.host().is_none() {
            return Err(invalid("must name a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "must not carry credentials; put the key in its own secret",
            ));
        }
        if url.query().is_some() {
            return Err(invalid(
                "must be a base URL without a query (`?...`); the API path is added to it",
            ));
        }
        if url.fragment().is_some() {
            return Err(invalid("must be a base URL without a fragment (`#...`)"));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(BaseUrl { url })
    }

    /// The URL of `path` (relative, e.g. `chat/completions`) below this root.
    pub fn endpoint(&self, path: &str) -> Url {
        let mut url = self.url.clone();
        let joined = format!("{}{}", url.path(), path.trim_start_matches('/'));
        url.set_path(&joined);
        url
    }

    pub fn host(&self) -> String {
        self.url.host_str().unwrap_or_default().to_owned()
    }

    /// The root as one string without the trailing `/`: what a secret is bound to.
    pub fn identity(&self) -> String {
        self.url.as_str().trim_end_matches('/').to_owned()
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.identity())
    }
}

// ------------------------------------------------------------------------------------------------
// Clients
// ------------------------------------------------------------------------------------------------

/// Resolves names and keeps only the addresses the allow-list permits.
struct GuardedResolver {
    allow: AllowList,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|address| allow.permits(&host, address.ip()))
                .collect();
            if permitted.is_empty() && !resolved.is_empty() {
                tracing::warn!(
                    host,
                    addresses = ?resolved.iter().map(SocketAddr::ip).collect::<Vec<_>>(),
                    "outbound request refused: the host resolves to non-public addresses"
                );
                return Err(Box::new(Refused { host }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// The HTTP clients for outbound requests: one for operator URLs, one per tenant allow-list
/// (rebuilt when the list changes, which also drops connections the old list allowed).
pub struct OutboundClients {
    connect_timeout: Duration,
    configured: AllowList,
    operator: reqwest::Client,
    tenant: Mutex<Option<(AllowList, reqwest::Client)>>,
}

impl fmt::Debug for OutboundClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundClients")
            .field("connect_timeout", &self.connect_timeout)
            .field("allowed_hosts", &self.configured.entries())
            .finish_non_exhaustive()
    }
}

impl OutboundClients {
    pub fn new(settings: &OutboundSettings) -> Result<Arc<OutboundClients>, OutboundError> {
        let configured = AllowList::parse(&settings.allowed_hosts).map_err(|reason| {
            OutboundError::InvalidUrl(format!("outbound.allowed_hosts: {reason}"))
        })?;
        let connect_timeout = Duration::from_secs(settings.connect_timeout_secs.max(1));
        let operator = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| OutboundError::Client(error.to_string()))?;
        Ok(Arc::new(OutboundClients {
            connect_timeout,
            configured,
            operator,
            tenant: Mutex::new(None),
        }))
    }

    /// The allow-list of the settings alone.
    pub fn configured_allow_list(&self) -> &AllowList {
        &self.configured
    }

    /// The client for requests to `url`, after checking an IP literal against the policy.
    /// `extra` is the platform config's allow-list, added to the settings' one.
    pub fn client_for(
        &self,
        url: &BaseUrl,
        trust: Trust,
        extra: &AllowList,
    ) -> Result<reqwest::Client, OutboundError> {
        if trust == Trust::Operator {
            return Ok(self.operator.clone());
        }
        let allow = self.configured.merged(extra);
        if let Some(ip) = literal_ip(&url.url) {
            let host = url.host();
            if !allow.permits(&host, ip) {
                tracing::warn!(host, "outbound request refused: a non-public IP address");
                return Err(OutboundError::Refused(Refused { host }));
            }
        }
        let mut tenant = self
            .tenant
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some((built_for, client)) = tenant.as_ref()
            && *built_for == allow
        {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                allow: allow.clone(),
            }))
            .build()
            .map_err(|error| OutboundError::Client(error.to_string()))?;
        *tenant = Some((allow, client.clone()));
        Ok(client)
    }
}

fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_roots_whose_paths_are_joined() {
        let base = BaseUrl::parse("https://api.example.com/v1").unwrap();
        assert_eq!(
            base.endpoint("chat/completions").as_str(),
            "https://api.example.com/v1/chat/completions"
        );
        assert_eq!(base.identity(), "https://api.example.com/v1");
        let root = BaseUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            root.endpoint("/embeddings").as_str(),
            "http://127.0.0.1:8080/embeddings"
        );
        // A query or fragment would swallow the appended path.
        for refused in [
            "http://10.0.0.1/admin/delete-all?confirm=yes&x=",
            "http://example.com/v1#",
            "ftp://example.com/",
            "http://user:pw@example.com/v1",
            "not a url",
            "file:///etc/passwd",
        ] {
            assert!(
                matches!(BaseUrl::parse(refused), Err(OutboundError::InvalidUrl(_))),
                "{refused}"
            );
        }
    }

    #[tokio::test]
    async fn tenant_clients_refuse_private_literals_and_names() {
        let clients = OutboundClients::new(&OutboundSettings {
            allowed_hosts: vec![],
            connect_timeout_secs: 2,
        })
        .unwrap();
        let none = AllowList::default();
        for url in [
            "http://127.0.0.1:9/v1",
            "http://[::1]:9/v1",
            "http://[::ffff:169.254.169.254]/",
            "http://169.254.169.254/latest",
        ] {
            let base = BaseUrl::parse(url).unwrap();
            assert!(
                matches!(
                    clients.client_for(&base, Trust::Tenant, &none),
                    Err(OutboundError::Refused(_))
                ),
                "{url}"
            );
            assert!(clients.client_for(&base, Trust::Operator, &none).is_ok());
        }
        // `localhost` is a name: the resolver refuses it at connect time, with an error the
        // callers recognise.
        let base = BaseUrl::parse("http://localhost:9/v1").unwrap();
        let client = clients.client_for(&base, Trust::Tenant, &none).unwrap();
        let error = client
            .get(base.endpoint("models"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            find_refusal(&error).map(|refused| refused.host.as_str()),
            Some("localhost"),
            "{error:?}"
        );
        let allowed = AllowList::parse(&["127.0.0.1"]).unwrap();
        let base = BaseUrl::parse("http://127.0.0.1:9/v1").unwrap();
        assert!(clients.client_for(&base, Trust::Tenant, &allowed).is_ok());
    }
}
