//! What every handler shares.

use crate::jwt::JwtVerifier;
use crate::settings::Settings;
use assay_service::Service;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    /// Every operation goes through the service.
    pub service: Service,
    /// Operator settings the HTTP layer applies (external identity, CORS).
    pub settings: Arc<Settings>,
    /// External identity: set when `settings.jwt` is (see [`JwtVerifier::new`]).
    pub jwt: Option<Arc<JwtVerifier>>,
}
