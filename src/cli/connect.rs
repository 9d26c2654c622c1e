//! The connection to a batchops server: its endpoint, TLS (and mutual
//! TLS) and the API token sent with every call.

use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::{CliError, ClientOptions};
use crate::proto as pb;
use crate::proto::job_service_client::JobServiceClient;

/// A connected client and the account it acts for.
pub struct Client {
    /// The generated client, sending the token with every call.
    pub jobs: JobServiceClient<InterceptedService<Channel, Bearer>>,
    /// The account every request names.
    pub account_id: String,
}

/// Adds the API token, if any, to every call.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl Client {
    pub(super) async fn connect(options: &ClientOptions) -> Result<Client, CliError> {
        let endpoint = if options.endpoint.contains("://") {
            options.endpoint.clone()
        } else {
            format!("http://{}", options.endpoint)
        };
        let failed = |reason: String| CliError::Connect {
            endpoint: endpoint.clone(),
            reason,
        };
        let mut channel = Channel::from_shared(endpoint.clone())
            .map_err(|e| failed(e.to_string()))?
            .connect_timeout(Duration::from_secs(5));
        if endpoint.starts_with("https://") {
            channel = channel
                .tls_config(client_tls(options)?)
                .map_err(|e| failed(source_chain(&e)))?;
        }
        let channel = channel
            .connect()
            .await
            .map_err(|e| failed(source_chain(&e)))?;
        let bearer = match &options.token {
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| CliError::Usage("--token: not a valid header value".into()))?,
            ),
            None => None,
        };
        Ok(Client {
            jobs: JobServiceClient::with_interceptor(channel, Bearer(bearer)),
            account_id: options.account_id.clone(),
        })
    }

    pub(super) async fn describe(&mut self, job_id: &str) -> Result<pb::JobDescriptor, CliError> {
        let response = self
            .jobs
            .describe_job(pb::DescribeJobRequest {
                account_id: self.account_id.clone(),
                job_id: job_id.to_owned(),
            })
            .await?
            .into_inner();
        response
            .job
            .ok_or_else(|| CliError::Stream("DescribeJob returned no job".into()))
    }
}

/// TLS settings for an https:// endpoint.
fn client_tls(options: &ClientOptions) -> Result<tonic::transport::ClientTlsConfig, CliError> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|error| {
            CliError::Usage(format!("--{flag}: cannot read {}: {error}", path.display()))
        })
    };
    let mut tls = ClientTlsConfig::new();
    if let Some(ca) = &options.ca_cert {
        tls = tls.ca_certificate(Certificate::from_pem(read("ca-cert", ca)?));
    }
    if let (Some(cert), Some(key)) = (&options.client_cert, &options.client_key) {
        tls = tls.identity(Identity::from_pem(
            read("client-cert", cert)?,
            read("client-key", key)?,
        ));
    }
    Ok(tls)
}

/// The error and its causes, `: `-joined ("transport error: connection refused").
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
