//! How the filter names the cluster of a JWKS or introspection host: the clusters `envoy.yaml`
//! defines, or the ones Istio derives from a ServiceEntry.

use crate::cli::discovery::url::HttpUrl;
use crate::cli::render::envoy;

/// How the JWKS cluster of a host is named: differs between a plain Envoy bootstrap and Istio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterNaming {
    /// `keygate_jwks_<host>_<port>_<digest>`, the clusters `envoy.yaml` defines.
    Envoy,
    /// `outbound|<port>||<host>`, the clusters Istio derives from a ServiceEntry.
    Istio,
}

impl ClusterNaming {
    pub fn jwks_cluster(self, url: &HttpUrl) -> String {
        match self {
            ClusterNaming::Envoy => envoy::jwks_cluster(url),
            ClusterNaming::Istio => format!("outbound|{}||{}", url.port, url.host),
        }
    }

    /// The cluster of the application directory source.
    pub fn directory_cluster(self, url: &HttpUrl) -> String {
        match self {
            ClusterNaming::Envoy => envoy::directory_cluster(url),
            ClusterNaming::Istio => format!("outbound|{}||{}", url.port, url.host),
        }
    }

    /// The cluster of an introspection endpoint: the JWKS cluster when both are on one target
    /// (scheme, host, port), else one of its own.
    pub fn introspection_cluster(self, url: &HttpUrl, jwks: &HttpUrl) -> String {
        if url.target() == jwks.target() {
            return self.jwks_cluster(jwks);
        }
        match self {
            ClusterNaming::Envoy => envoy::introspection_cluster(url),
            ClusterNaming::Istio => format!("outbound|{}||{}", url.port, url.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names() {
        let url = HttpUrl::parse("https://login.example.com/keys").unwrap();
        assert!(ClusterNaming::Envoy
            .jwks_cluster(&url)
            .starts_with("keygate_jwks_login_example_com_443_"));
        assert_eq!(
            ClusterNaming::Istio.jwks_cluster(&url),
            "outbound|443||login.example.com"
        );
    }
}
