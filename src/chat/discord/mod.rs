//! The Discord adapter. Two ways in — the gateway ([`gateway`], the default:
//! it works behind NAT) and an HTTP interactions endpoint ([`interactions`]) —
//! lead to one handler, [`Discord::handle`], which answers every interaction
//! at once (a deferred response where work follows) and does the work on a
//! task: the interaction becomes an [`Inbound`] command line for the shared
//! [`Dispatcher`], the reply goes back through the interaction's webhook, and
//! Discord-only extras — approval cards and status threads ([`cards`]) — are
//! posted around it. Nothing here decides policy: buttons and modals become
//! the same command lines a user could type (`approve:12` → `/approve 12`).

pub mod cards;
pub mod commands;
pub mod config;
pub mod gateway;
pub mod interactions;
pub mod sink;

use crate::app::App;
use crate::catalog::command::{Action, Invocation};
use crate::catalog::Catalog;
use crate::chat::{ChatError, ChatSink, Inbound, Reply, ReplyTo};
use crate::dispatch::Dispatcher;
use crate::domain::team::{teams_of, Actor, Platform};
use crate::store::Store;
use anyhow::Context as _;
use config::{DiscordConfig, Mode};
use serde_json::{json, Value};
use serenity::http::{LightMethod, Route};
use serenity::model::application::{
    ActionRowComponent, CommandInteraction, ComponentInteraction, Interaction, ModalInteraction,
};
use serenity::model::guild::Member;
use serenity::model::id::ApplicationId;
use serenity::model::user::User;
use sink::{DiscordSink, Rest};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Message flag EPHEMERAL: only the person who asked sees it.
const EPHEMERAL: u64 = 1 << 6;

/// The running Discord adapter.
pub struct Discord {
    pub config: DiscordConfig,
    pub rest: Arc<Rest>,
    pub sink: Arc<DiscordSink>,
    dispatcher: Dispatcher,
    catalog: Arc<Catalog>,
    store: Store,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

/// The person behind an interaction: roles come from the guild member.
fn actor(user: &User, member: Option<&Member>) -> Actor {
    let display = member
        .and_then(|m| m.nick.clone())
        .or_else(|| user.global_name.clone())
        .unwrap_or_else(|| user.name.clone());
    Actor {
        platform: Platform::Discord,
        user_id: user.id.to_string(),
        display,
        roles: member
            .map(|m| m.roles.iter().map(|r| r.to_string()).collect())
            .unwrap_or_default(),
    }
}

/// What a button's custom_id asks for. Ids carry no user data, only numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Button {
    Approve(i64),
    Deny(i64),
    Start(i64),
    Stop(i64),
    Destroy(i64),
    DestroyConfirmed(i64),
    Extend(i64),
}

impl Button {
    fn parse(custom_id: &str) -> Option<Button> {
        let (kind, id) = custom_id.rsplit_once(':')?;
        let id: i64 = id.parse().ok()?;
        Some(match kind {
            "approve" => Button::Approve(id),
            "deny" => Button::Deny(id),
            "env:start" => Button::Start(id),
            "env:stop" => Button::Stop(id),
            "env:destroy" => Button::Destroy(id),
            "env:destroy-confirmed" => Button::DestroyConfirmed(id),
            "env:extend" => Button::Extend(id),
            _ => return None,
        })
    }
}

/// Where an interaction came from and how to answer it later.
struct Origin {
    actor: Actor,
    event_id: String,
    channel: u64,
    token: String,
    /// A slash command's id: its job's progress becomes its follow-up.
    interaction: Option<String>,
}

impl Discord {
    /// Builds the adapter if `[discord]` is configured.
    pub fn new(app: &App) -> anyhow::Result<Option<Arc<Discord>>> {
        let Some(cfg) = app.config.discord.clone() else {
            return Ok(None);
        };
        let rest = Arc::new(
            Rest::new(
                &cfg.token,
                cfg.api_proxy.clone(),
                cfg.application_id,
                cfg.channel_rate_per_sec,
                cfg.channel_burst,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        Ok(Some(Arc::new(Discord {
            sink: Arc::new(DiscordSink::new(rest.clone(), app.tracker.clone())),
            rest,
            config: cfg,
            dispatcher: app.dispatcher(),
            catalog: app.catalog.clone(),
            store: app.store.clone(),
            tracker: app.tracker.clone(),
            cancel: app.cancel.clone(),
        })))
    }

    /// The sink the notifier posts progress through.
    pub fn sink(&self) -> Arc<dyn ChatSink> {
        self.sink.clone()
    }

    /// Starts the configured way in, the lifecycle watcher and approval expiry;
    /// syncs the commands first if configured. Returns the interactions
    /// endpoint's address in http mode.
    pub async fn start(self: &Arc<Self>, app: &App) -> anyhow::Result<Option<SocketAddr>> {
        if self.config.sync_commands_on_start {
            let n = commands::sync(
                &self.rest,
                self.config.guild_id,
                &commands::definitions(&self.catalog),
            )
            .await
            .context("cannot sync the Discord commands (discord.sync_commands_on_start)")?;
            tracing::info!(commands = n, "Discord commands synced");
        }
        self.tracker
            .spawn(cards::watch_lifecycle(self.clone(), app.bus.subscribe()));
        self.tracker.spawn(cards::watch_decisions(
            self.clone(),
            self.dispatcher.decisions.subscribe(),
        ));
        self.tracker.spawn(cards::expire_loop(self.clone()));
        match self.config.mode {
            Mode::Http { listen } => {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on discord.listen {listen}"))?;
                let bound = listener.local_addr()?;
                let endpoint = interactions::Endpoint::new(self.clone())?;
                self.tracker
                    .spawn(endpoint.serve(listener, self.cancel.clone()));
                tracing::info!(%bound, "Discord interactions endpoint listening");
                Ok(Some(bound))
            }
            Mode::Gateway => {
                let client = gateway::client(self.clone()).await?;
                self.tracker
                    .spawn(gateway::run(client, self.cancel.clone()));
                Ok(None)
            }
        }
    }

    /// The one handler of both ways in: returns the interaction's immediate
    /// response (None: nothing to answer). It never waits on Proxmox or on a
    /// Discord call; work that may is spawned.
    pub async fn handle(self: &Arc<Self>, interaction: Interaction) -> Option<Value> {
        match interaction {
            Interaction::Ping(_) => Some(json!({ "type": 1 })),
            Interaction::Command(cmd) => Some(self.command(cmd)),
            Interaction::Autocomplete(cmd) => Some(self.autocomplete(&cmd).await),
            Interaction::Component(c) => Some(self.component(c).await),
            Interaction::Modal(m) => Some(self.modal(m)),
            _ => None,
        }
    }

    fn command(self: &Arc<Self>, cmd: CommandInteraction) -> Value {
        let line = commands::command_line(&cmd.data);
        let private = match self.catalog.parse(&line) {
            // `private = true` in its definition: the deferred answer is ephemeral.
            Ok((spec, inv)) => spec.private || is_dry_run(&inv),
            Err(_) => true,
        };
        let origin = Origin {
            actor: actor(&cmd.user, cmd.member.as_deref()),
            event_id: format!("discord:{}", cmd.id),
            channel: cmd.channel_id.get(),
            token: cmd.token.clone(),
            interaction: Some(cmd.id.to_string()),
        };
        self.sink
            .remember_interaction(&cmd.id.to_string(), &cmd.token);
        let this = self.clone();
        self.tracker.spawn(async move {
            let reply = this.run(&origin, line).await;
            this.answer_deferred(&origin.token, private, &reply).await;
        });
        let flags = if private { EPHEMERAL } else { 0 };
        json!({ "type": 5, "data": { "flags": flags } })
    }

    async fn autocomplete(&self, cmd: &CommandInteraction) -> Value {
        let Some(focused) = cmd.data.autocomplete() else {
            return commands::choices(Vec::new(), "");
        };
        let actor = actor(&cmd.user, cmd.member.as_deref());
        let names: Vec<String> =
            match commands::choice_source(&self.catalog, &cmd.data, focused.name) {
                Some(crate::catalog::command::ChoiceSource::Profiles) => self
                    .catalog
                    .profiles
                    .iter()
                    .map(|p| p.name.clone())
                    .collect(),
                Some(crate::catalog::command::ChoiceSource::Teams) => {
                    teams_of(&self.dispatcher.config.teams, &actor)
                        .iter()
                        .map(|t| t.name.0.clone())
                        .collect()
                }
                Some(crate::catalog::command::ChoiceSource::Environments) => {
                    let mut names = Vec::new();
                    for t in teams_of(&self.dispatcher.config.teams, &actor) {
                        match self.store.list_envs(Some(t.name.0.clone())).await {
                            Ok(envs) => names.extend(envs.into_iter().map(|e| e.name)),
                            Err(e) => {
                                tracing::warn!(error = %e, "autocomplete: cannot list environments")
                            }
                        }
                    }
                    names
                }
                None => Vec::new(),
            };
        commands::choices(names, focused.value)
    }

    async fn component(self: &Arc<Self>, c: ComponentInteraction) -> Value {
        let origin = Origin {
            actor: actor(&c.user, c.member.as_ref()),
            event_id: format!("discord:{}", c.id),
            channel: c.channel_id.get(),
            token: c.token.clone(),
            interaction: None,
        };
        let line = match Button::parse(&c.data.custom_id) {
            Some(Button::Approve(id)) => Ok(format!("/approve {id}")),
            Some(Button::Deny(id)) => {
                return match self.dispatcher.refusal_to_deny(&origin.actor, id).await {
                    Ok(None) => cards::deny_modal(id),
                    Ok(Some(why)) => json!({ "type": 4, "data": { "flags": EPHEMERAL,
                        "content": format!("⛔ {why}") } }),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot check who may deny request {id}");
                        json!({ "type": 4, "data": { "flags": EPHEMERAL,
                            "content": "⚠️ Slipway could not look up that request; try again in a moment." } })
                    }
                }
            }
            Some(Button::Destroy(env)) => return cards::confirm_destroy(env),
            Some(Button::Start(env)) => Err(("start", env)),
            Some(Button::Stop(env)) => Err(("stop", env)),
            Some(Button::DestroyConfirmed(env)) => Err(("destroy", env)),
            Some(Button::Extend(env)) => Err(("extend", env)),
            None => {
                return json!({ "type": 4, "data": { "flags": EPHEMERAL,
                    "content": "⚠️ This button is no longer understood; use the slash commands." } })
            }
        };
        let this = self.clone();
        self.tracker.spawn(async move {
            let line = match line {
                Ok(line) => Some(line),
                Err((verb, env)) => this.env_line(verb, env).await,
            };
            let reply = match line {
                Some(line) => this.run(&origin, line).await,
                None => Reply::private("⚠️ That environment no longer exists."),
            };
            this.follow_up(&origin.token, &reply).await;
        });
        json!({ "type": 6 })
    }

    fn modal(self: &Arc<Self>, m: ModalInteraction) -> Value {
        let origin = Origin {
            actor: actor(&m.user, m.member.as_ref()),
            event_id: format!("discord:{}", m.id),
            channel: m.channel_id.get(),
            token: m.token.clone(),
            interaction: None,
        };
        let reason = m
            .data
            .components
            .iter()
            .flat_map(|row| row.components.iter())
            .find_map(|c| match c {
                ActionRowComponent::InputText(t) if t.custom_id == "reason" => t.value.clone(),
                _ => None,
            })
            .unwrap_or_default();
        let line = match Button::parse(&m.data.custom_id) {
            Some(Button::Deny(id)) => format!(
                "/deny id:{id} {}",
                shell_words::quote(&format!("reason:{}", reason.trim()))
            ),
            _ => return json!({ "type": 6 }),
        };
        let this = self.clone();
        self.tracker.spawn(async move {
            let reply = this.run(&origin, line).await;
            this.follow_up(&origin.token, &reply).await;
        });
        json!({ "type": 6 })
    }

    /// `/env VERB NAME` for a thread button, if the environment is still the
    /// one the button was made for (a name may be reused after a destroy).
    async fn env_line(&self, verb: &str, env_id: i64) -> Option<String> {
        let env = self.store.env(env_id).await.ok().flatten()?;
        let live = self
            .store
            .env_by_name(env.name.clone())
            .await
            .ok()
            .flatten()?;
        if live.id != env_id {
            return None;
        }
        if verb == "extend" {
            // Extend by the profile's default lifetime.
            let step = self.catalog.profile(&env.profile).map(|p| p.ttl_default)?;
            return Some(format!(
                "/env extend {} by:{}",
                env.name,
                crate::chat::render::duration(step).replace(' ', "")
            ));
        }
        Some(format!("/env {verb} {}", env.name))
    }

    /// Runs one command line through the dispatcher, with Discord's extras
    /// around it: a status thread for a new environment, progress of an
    /// existing one into its thread, cards for approvals.
    async fn run(&self, origin: &Origin, line: String) -> Reply {
        let mut reply_to = ReplyTo {
            platform: Platform::Discord,
            channel: origin.channel.to_string(),
            thread: None,
            interaction: origin.interaction.clone(),
        };
        let parsed = self.catalog.parse(&line).ok();
        let mut new_thread = None;
        if let Some((spec, inv)) = &parsed {
            if spec.action == Action::EnvCreate && !is_dry_run(inv) {
                new_thread =
                    cards::open_thread(self, inv.str("name").unwrap_or("environment")).await;
                reply_to.thread = new_thread.map(|t| t.to_string());
            } else if spec.action.on_environments() {
                // `/env list` has no name, so no thread.
                let name = spec.action.option("name").and_then(|_| inv.str("name"));
                reply_to.thread = cards::env_thread_by_name(self, name).await;
            }
        }
        let inbound = Inbound {
            actor: origin.actor.clone(),
            text: line,
            event_id: origin.event_id.clone(),
            reply_to,
        };
        let reply = self.dispatcher.handle(&inbound).await;
        cards::after(self, &reply, new_thread).await;
        reply
    }

    /// Replaces a slash command's deferred response with the reply. A private
    /// reply to a public deferral is sent as an ephemeral follow-up instead:
    /// a response's visibility is fixed when it is deferred.
    async fn answer_deferred(&self, token: &str, deferred_private: bool, reply: &Reply) {
        let original = Route::WebhookOriginalInteractionResponse {
            application_id: ApplicationId::new(self.rest.application_id.max(1)),
            token,
        };
        if reply.private && !deferred_private {
            let deleted = self
                .rest
                .call(
                    "delete deferred response",
                    LightMethod::Delete,
                    original,
                    None,
                    None,
                )
                .await;
            if let Err(e) = deleted {
                tracing::warn!(error = %e, "could not remove a deferred Discord response");
            }
            self.follow_up(token, reply).await;
            return;
        }
        let body = sink::content(&reply.text);
        let edited = self
            .rest
            .call(
                "edit interaction response",
                LightMethod::Patch,
                original,
                Some(&body),
                None,
            )
            .await;
        if let Err(e) = edited {
            tracing::warn!(error = %e, "could not answer a Discord command");
        }
    }

    /// Sends the reply as a follow-up message of the interaction.
    async fn follow_up(&self, token: &str, reply: &Reply) {
        let mut body = sink::content(&reply.text);
        if reply.private {
            body["flags"] = json!(EPHEMERAL);
        }
        let app = ApplicationId::new(self.rest.application_id.max(1));
        if let Err(e) = self
            .rest
            .call(
                "follow-up message",
                LightMethod::Post,
                Route::WebhookFollowupMessages {
                    application_id: app,
                    token,
                },
                Some(&body),
                None,
            )
            .await
        {
            tracing::warn!(error = %e, "could not send a Discord follow-up");
        }
    }
}

/// Writes the slash commands for `config`'s catalog; `guild` overrides the
/// configured guild (None and no configured guild: global commands).
pub async fn sync_commands(
    config: &crate::config::Config,
    catalog: &Catalog,
    guild: Option<u64>,
) -> Result<usize, ChatError> {
    let Some(cfg) = &config.discord else {
        return Err(ChatError::Platform(
            "the configuration has no [discord] section".into(),
        ));
    };
    let rest = Rest::new(
        &cfg.token,
        cfg.api_proxy.clone(),
        cfg.application_id,
        cfg.channel_rate_per_sec,
        cfg.channel_burst,
    )?;
    commands::sync(
        &rest,
        guild.or(cfg.guild_id),
        &commands::definitions(catalog),
    )
    .await
}

/// `/env create … dry-run:true`: only a plan, shown to the caller alone.
fn is_dry_run(inv: &Invocation) -> bool {
    inv.action == Action::EnvCreate && inv.flag("dry-run")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn button_ids_parse_back() {
        assert_eq!(Button::parse("approve:12"), Some(Button::Approve(12)));
        assert_eq!(
            Button::parse("env:destroy-confirmed:3"),
            Some(Button::DestroyConfirmed(3))
        );
        assert_eq!(Button::parse("approve:x"), None);
        assert_eq!(Button::parse("rm:1"), None);
    }
}
