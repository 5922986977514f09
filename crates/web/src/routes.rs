//! The route table. Routes are added through [`Routes`], which records each
//! method and path, so tests can walk every registered state-changing route
//! and prove the CSRF guard covers it.

use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodRouter, delete, get, patch, post, put};

use crate::{AppState, api, fhir, pages};

/// One registered route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: &'static str,
    pub path: &'static str,
}

impl RouteInfo {
    /// POST, PUT, PATCH and DELETE change state.
    pub fn is_unsafe(&self) -> bool {
        matches!(self.method, "POST" | "PUT" | "PATCH" | "DELETE")
    }
}

pub(crate) struct Routes {
    router: Router<AppState>,
    table: Vec<RouteInfo>,
}

impl Routes {
    fn new() -> Self {
        Self {
            router: Router::new(),
            table: Vec::new(),
        }
    }

    fn add(mut self, method: &'static str, path: &'static str, mr: MethodRouter<AppState>) -> Self {
        self.table.push(RouteInfo { method, path });
        self.router = self.router.route(path, mr);
        self
    }

    pub(crate) fn get<H, T>(self, path: &'static str, h: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add("GET", path, get(h))
    }

    pub(crate) fn post<H, T>(self, path: &'static str, h: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add("POST", path, post(h))
    }

    pub(crate) fn put<H, T>(self, path: &'static str, h: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add("PUT", path, put(h))
    }

    #[allow(dead_code)]
    pub(crate) fn patch<H, T>(self, path: &'static str, h: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add("PATCH", path, patch(h))
    }

    #[allow(dead_code)]
    pub(crate) fn delete<H, T>(self, path: &'static str, h: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add("DELETE", path, delete(h))
    }
}

pub(crate) fn build() -> (Router<AppState>, Vec<RouteInfo>) {
    let r = Routes::new();
    let r = api::routes(r);
    let r = fhir::routes(r);
    let r = pages::routes(r);
    (r.router, r.table)
}

/// Every route the server registers, in registration order.
pub fn route_table() -> Vec<RouteInfo> {
    build().1
}
