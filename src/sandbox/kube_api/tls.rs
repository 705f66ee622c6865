//! HTTPS for the emulated API server. kubectl (client-go) sends credentials only over TLS, so
//! a server that requires a bearer token must speak TLS; plain HTTP stays on the same port for
//! TLS terminators in front of it and for clients that send tokens over plain HTTP (kube-rs).
//! The first byte of a connection tells them apart (a TLS handshake starts with `0x16`, an
//! HTTP request with a method name).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

/// How long a new connection may take to send its first byte and finish a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

/// A certificate could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen failed.
    #[error("generate the API server's certificate")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate.
    #[error("load the API server's certificate")]
    Load(#[from] rustls::Error),
}

impl crate::kind::Kinded for TlsError {
    fn kind(&self) -> crate::kind::Kind {
        crate::kind::Kind::Invalid
    }
}

/// The API server's TLS identity: a private CA made for this server alone and a certificate
/// for `127.0.0.1` and `localhost` signed by it. Kubeconfigs carry the CA.
pub struct ServerIdentity {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity").finish_non_exhaustive()
    }
}

impl ServerIdentity {
    /// A fresh CA and server certificate.
    pub fn generate() -> Result<ServerIdentity, TlsError> {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ankus sandbox CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;
        let key = rcgen::KeyPair::generate()?;
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ankus sandbox API server");
        let certificate = params.signed_by(&key, &ca)?;
        Ok(ServerIdentity {
            ca_pem: ca.pem(),
            chain: vec![certificate.der().clone(), ca.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// The CA certificate (PEM) clients trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                self.chain.clone(),
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// A connection to the API server: plain HTTP or HTTPS.
pub type Connection = Either<TcpStream, TlsStream<TcpStream>>;

/// Accepts plain and TLS connections on one port; handshakes run on tasks of their own, so a
/// client that never finishes one holds up nobody else.
pub struct DualListener {
    address: SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(Connection, SocketAddr)>,
}

impl DualListener {
    /// Starts accepting on `listener` until `stop` is cancelled.
    pub fn start(
        listener: TcpListener,
        identity: &ServerIdentity,
        stop: CancellationToken,
    ) -> Result<DualListener, TlsError> {
        let acceptor = identity.acceptor()?;
        let address = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (sender, ready) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, peer)) = accepted else {
                    // Out of file descriptors and the like: wait as axum's own listener does.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    let opened =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, open(stream, &acceptor)).await;
                    if let Ok(Some(connection)) = opened {
                        let _ = sender.send((connection, peer)).await;
                    }
                });
            }
        });
        Ok(DualListener { address, ready })
    }
}

async fn open(stream: TcpStream, acceptor: &TlsAcceptor) -> Option<Connection> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await.ok()? == 0 {
        return None;
    }
    if first[0] == TLS_HANDSHAKE {
        acceptor.accept(stream).await.ok().map(Either::Right)
    } else {
        Some(Either::Left(stream))
    }
}

impl axum::serve::Listener for DualListener {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept loop stopped: the server is shutting down.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.address)
    }
}
