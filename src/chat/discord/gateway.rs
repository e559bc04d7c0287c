//! Gateway mode: a serenity client keeps the websocket to Discord (no inbound
//! port, so it works behind NAT) and hands each INTERACTION_CREATE to
//! [`Discord::handle`]; the answer is posted to the interaction's callback.

use super::Discord;
use secrecy::ExposeSecret;
use serenity::all::{Context, EventHandler, GatewayIntents, Interaction, Ready};
use serenity::http::{HttpBuilder, LightMethod, Route};
use serenity::model::id::ApplicationId;
use serenity::Client;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

struct Handler {
    discord: Arc<Discord>,
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        tracing::info!(user = %ready.user.name, "connected to the Discord gateway");
    }

    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        let (id, token) = (interaction.id(), interaction.token().to_string());
        let Some(answer) = self.discord.handle(interaction).await else {
            return;
        };
        let route = Route::InteractionResponse {
            interaction_id: id,
            token: &token,
        };
        if let Err(e) = self
            .discord
            .rest
            .call(
                "interaction callback",
                LightMethod::Post,
                route,
                Some(&answer),
                None,
            )
            .await
        {
            tracing::warn!(error = %e, "could not answer a Discord interaction");
        }
    }
}

/// Builds the gateway client. With `discord.api_proxy` set, REST calls go to
/// the proxy, and serenity's own rate limiter is off (it ignores the proxy).
pub async fn client(discord: Arc<Discord>) -> anyhow::Result<Client> {
    let cfg = &discord.config;
    let mut http = HttpBuilder::new(cfg.token.expose_secret())
        .application_id(ApplicationId::new(cfg.application_id.max(1)));
    if let Some(proxy) = &cfg.api_proxy {
        http = http.proxy(proxy.clone()).ratelimiter_disabled(true);
    }
    // Interactions need no privileged intent; GUILDS keeps threads current.
    let client =
        serenity::client::ClientBuilder::new_with_http(http.build(), GatewayIntents::GUILDS)
            .event_handler(Handler {
                discord: discord.clone(),
            })
            .await?;
    Ok(client)
}

/// Runs the client until `cancel`, then closes the shards.
pub async fn run(mut client: Client, cancel: CancellationToken) {
    let shards = client.shard_manager.clone();
    tokio::select! {
        result = client.start() => {
            if let Err(e) = result {
                tracing::error!(error = %e, "the Discord gateway connection ended");
            }
        }
        _ = cancel.cancelled() => shards.shutdown_all().await,
    }
}
