//! Discord's own surfaces around the shared pipeline: the approval card in the
//! admin channel (Approve / Deny buttons, the deny modal, the edit after a
//! decision or on expiry) and the status thread of each environment (its
//! progress message, every lifecycle event with Start / Stop / Destroy
//! buttons, archived after teardown). What is posted is looked up again by
//! the ids kept in the store, so it survives a restart.

use super::sink::{clip, content, snowflake};
use super::{Discord, EPHEMERAL};
use crate::chat::{render, Decision, MessageRef, Reply, ReplyTo};
use crate::domain::lifecycle::JobKind;
use crate::domain::quota;
use crate::domain::team::Platform;
use crate::progress::{Outcome, Progress};
use crate::store::envs::ApprovalRecord;
use serde_json::{json, Value};
use serenity::http::{LightMethod, Route};
use serenity::model::id::ChannelId;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

const CARD: &str = "approval_card";
const THREAD: &str = "env_thread";
const DISCORD: &str = "discord";

/// Button styles.
const PRIMARY: u8 = 1;
const SUCCESS: u8 = 3;
const DANGER: u8 = 4;
const SECONDARY: u8 = 2;

fn button(label: &str, style: u8, custom_id: String, disabled: bool) -> Value {
    json!({ "type": 2, "style": style, "label": label, "custom_id": custom_id, "disabled": disabled })
}

fn row(buttons: Vec<Value>) -> Value {
    json!({ "type": 1, "components": buttons })
}

/// `<@id>` for a Discord actor key (`discord:123`), else the key itself.
fn who(key: &str) -> String {
    match key.strip_prefix("discord:") {
        Some(id) => format!("<@{id}>"),
        None => key.to_string(),
    }
}

/// The modal a Deny button opens: the reason is asked for, never guessed.
pub(super) fn deny_modal(approval: i64) -> Value {
    json!({ "type": 9, "data": {
        "custom_id": format!("deny:{approval}"),
        "title": format!("Deny request #{approval}"),
        "components": [row(vec![json!({
            "type": 4, "custom_id": "reason", "style": 2, "label": "Why is it denied?",
            "min_length": 3, "max_length": 500, "required": true,
        })])],
    }})
}

/// Destroy asks first, privately.
pub(super) fn confirm_destroy(env: i64) -> Value {
    json!({ "type": 4, "data": {
        "flags": EPHEMERAL,
        "content": "Destroy this environment? Its container and data are deleted; this cannot be undone.",
        "components": [row(vec![button("Destroy", DANGER, format!("env:destroy-confirmed:{env}"), false)])],
    }})
}

/// Creates the status thread for a requested environment (None: no status
/// channel is configured, or Discord refused; the request goes on without).
pub(super) async fn open_thread(d: &Discord, name: &str) -> Option<u64> {
    let channel = d.config.status_channel?;
    let body = json!({ "name": clip(name, 100), "type": 11, "auto_archive_duration": 10080 });
    let answer = d
        .rest
        .call(
            "create thread",
            LightMethod::Post,
            Route::ChannelThreads {
                channel_id: ChannelId::new(channel.max(1)),
            },
            Some(&body),
            None,
        )
        .await;
    match answer {
        Ok(v) => snowflake(v.as_ref().map(|v| &v["id"])),
        Err(e) => {
            tracing::warn!(error = %e, "could not create a status thread");
            None
        }
    }
}

async fn thread_of(d: &Discord, env_id: i64) -> Option<u64> {
    d.store
        .chat_ref(THREAD, env_id, DISCORD)
        .await
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
}

/// The status thread of the live environment `name`, if it has one.
pub(super) async fn env_thread_by_name(d: &Discord, name: Option<&str>) -> Option<String> {
    let env = d
        .store
        .env_by_name(name?.to_string())
        .await
        .ok()
        .flatten()?;
    thread_of(d, env.id).await.map(|t| t.to_string())
}

async fn channel_call(
    d: &Discord,
    what: &str,
    method: LightMethod,
    channel: u64,
    body: Option<&Value>,
) {
    let route = Route::Channel {
        channel_id: ChannelId::new(channel.max(1)),
    };
    if let Err(e) = d.rest.call(what, method, route, body, None).await {
        tracing::warn!(error = %e, channel, "{what} failed");
    }
}

async fn post(d: &Discord, channel: u64, body: &Value) {
    if let Err(e) = d.rest.post_message(channel, body).await {
        tracing::warn!(error = %e, channel, "could not post to Discord");
    }
}

/// After the dispatcher answered: keep or drop the new thread, post the card
/// of a new approval request. Cards are edited after a decision by
/// [`watch_decisions`].
pub(super) async fn after(d: &Discord, reply: &Reply, new_thread: Option<u64>) {
    let env_id = match (reply.job, reply.approval) {
        (Some(job), _) => d.store.job(job).await.ok().flatten().map(|j| j.env_id),
        (None, Some(a)) => d.store.approval(a).await.ok().flatten().map(|a| a.env_id),
        _ => None,
    };
    if let Some(thread) = new_thread {
        match env_id {
            Some(env) => {
                let _ = d
                    .store
                    .set_chat_ref(THREAD, env, DISCORD, thread.to_string())
                    .await;
                if reply.approval.is_some() {
                    post(d, thread, &content(&reply.text)).await;
                }
            }
            // Nothing was requested after all (refused, invalid, a duplicate).
            None => channel_call(d, "delete thread", LightMethod::Delete, thread, None).await,
        }
    }
    if let Some(id) = reply.approval {
        post_card(d, id).await;
    }
}

/// Edits the card of every decided request, wherever it was decided (a
/// button here, a Matrix reaction, the console), and tells the requester.
pub(super) async fn watch_decisions(d: Arc<Discord>, rx: Receiver<Decision>) {
    let cancel = d.cancel.clone();
    crate::chat::each_decision(rx, cancel, |decision| {
        let d = d.clone();
        async move {
            decided(&d, decision.approval, &decision.text, &decision.decided_in).await;
        }
    })
    .await;
}

async fn card_body(d: &Discord, a: &ApprovalRecord, decision: Option<&str>) -> Option<Value> {
    let env = d.store.env(a.env_id).await.ok().flatten()?;
    let team = d.dispatcher.config.team(&a.team)?;
    let usage = d.store.usage(a.team.clone()).await.ok()?;
    // Pending: what approving would do. Decided: the use now, which an
    // approved request is part of already (never counted twice).
    let quota_field = match decision {
        None => {
            json!({"name": "Quota use (before → after)", "value": render::quota_change(&quota::check(&team.quota, usage, &env.resources))})
        }
        Some(_) => {
            json!({"name": "Quota use now", "value": render::quota(&a.team, &team.quota, &usage)})
        }
    };
    let r = &env.resources;
    let mut fields = vec![
        json!({"name": "Requester", "value": format!("{} ({})", who(&a.requester), clip(&env.owner_display, 80)), "inline": true}),
        json!({"name": "Team", "value": a.team, "inline": true}),
        json!({"name": "Profile", "value": env.profile, "inline": true}),
        json!({"name": "Resources", "value": format!("{}, {} MB memory, {} GB disk", render::cores(r.cores), r.memory_mb, r.disk_gb)}),
        quota_field,
        json!({"name": "Why approval is needed", "value": clip(&a.reason.describe(), 1024)}),
    ];
    if let Some(text) = decision {
        fields.push(json!({"name": "Decision", "value": clip(text, 1024)}));
    }
    let pending = decision.is_none();
    Some(json!({
        "embeds": [{
            "title": clip(&format!("Request #{}: {}", a.id, env.name), 256),
            "color": if pending { 0xF1C40F } else { 0x95A5A6 },
            "fields": fields,
        }],
        "components": [row(vec![
            button("Approve", SUCCESS, format!("approve:{}", a.id), !pending),
            button("Deny", DANGER, format!("deny:{}", a.id), !pending),
        ])],
        "allowed_mentions": { "parse": [] },
    }))
}

/// Posts the approval card of request `id` in the admin channel.
async fn post_card(d: &Discord, id: i64) {
    let Some(a) = d.store.approval(id).await.ok().flatten() else {
        return;
    };
    let Some(body) = card_body(d, &a, None).await else {
        return;
    };
    let channel = d.config.admin_channel;
    match d.rest.post_message(channel, &body).await {
        Ok(msg) => {
            let r = MessageRef {
                platform: Platform::Discord,
                channel: channel.to_string(),
                id: msg.to_string(),
            };
            let _ = d
                .store
                .set_chat_ref(
                    CARD,
                    id,
                    DISCORD,
                    serde_json::to_string(&r).unwrap_or_default(),
                )
                .await;
            // Decided or expired while the card was on its way: nothing
            // edited it then, so say so now.
            if let Ok(Some(now)) = d.store.approval(id).await {
                if let Some(text) = settled(d, &now) {
                    edit_card(d, &now, &text).await;
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, request = id, "could not post the approval card"),
    }
}

/// What a card says about a request that is no longer pending.
fn settled(d: &Discord, a: &ApprovalRecord) -> Option<String> {
    let by = a.decided_by.as_deref().map(who).unwrap_or_default();
    match a.state.as_str() {
        "pending" => None,
        "expired" => Some(expired_text(d, a.id)),
        "approved" => Some(format!("✅ Request #{} approved by {by}", a.id)),
        "void" => Some(format!(
            "➖ Request #{} is void: its environment is gone, so nothing was changed",
            a.id
        )),
        other => Some(format!("🚫 Request #{} {other} by {by}", a.id)),
    }
}

fn expired_text(d: &Discord, id: i64) -> String {
    format!(
        "⌛ Request #{id} expired: no admin decided within {}.",
        render::duration(d.config.approval_expiry)
    )
}

/// Edits the card after a decision (buttons disabled, who and when) and tells
/// the requester where they asked.
async fn decided(d: &Discord, id: i64, text: &str, decided_in: &ReplyTo) {
    let Some(a) = d.store.approval(id).await.ok().flatten() else {
        return;
    };
    let when = format!("{} — <t:{}:f>", text, crate::store::now());
    edit_card(d, &a, &when).await;
    if let Some(to) = ReplyTo::from_json(&a.reply_to).filter(|to| to != decided_in) {
        tell(d, &to, &a.requester, text).await;
        if a.state != "approved" {
            archive(d, &to).await;
        }
    }
}

async fn edit_card(d: &Discord, a: &ApprovalRecord, decision: &str) {
    let Some(card) = d
        .store
        .chat_ref(CARD, a.id, DISCORD)
        .await
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_str::<MessageRef>(&v).ok())
    else {
        return;
    };
    let (Ok(channel), Ok(msg)) = (card.channel.parse::<u64>(), card.id.parse::<u64>()) else {
        return;
    };
    if let Some(body) = card_body(d, a, Some(decision)).await {
        if let Err(e) = d.rest.edit_message(channel, msg, &body).await {
            tracing::warn!(error = %e, request = a.id, "could not edit the approval card");
        }
    }
}

/// Posts `text` where the requester asked, mentioning them.
async fn tell(d: &Discord, to: &ReplyTo, requester: &str, text: &str) {
    if to.platform != Platform::Discord {
        return;
    }
    let Ok(channel) = to.thread.as_deref().unwrap_or(&to.channel).parse::<u64>() else {
        return;
    };
    let mut body = content(&format!("{} {text}", who(requester)));
    if let Some(id) = requester.strip_prefix("discord:") {
        body["allowed_mentions"] = json!({ "parse": [], "users": [id] });
    }
    post(d, channel, &body).await;
}

async fn archive(d: &Discord, to: &ReplyTo) {
    if to.platform != Platform::Discord {
        return;
    }
    if let Some(thread) = to.thread.as_deref().and_then(|t| t.parse::<u64>().ok()) {
        channel_call(
            d,
            "archive thread",
            LightMethod::Patch,
            thread,
            Some(&json!({ "archived": true })),
        )
        .await;
    }
}

/// Expires approvals nobody decided within `discord.approval_expiry`.
pub(super) async fn expire_loop(d: Arc<Discord>) {
    let max_age = d.config.approval_expiry;
    let every = (max_age / 10).clamp(Duration::from_millis(200), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = d.cancel.cancelled() => return,
        }
        let expired = match d.store.expire_approvals(max_age.as_secs() as i64).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %e, "cannot expire approvals");
                continue;
            }
        };
        for a in expired {
            let text = expired_text(&d, a.id);
            edit_card(&d, &a, &text).await;
            if let Some(to) = ReplyTo::from_json(&a.reply_to) {
                tell(&d, &to, &a.requester, &text).await;
                archive(&d, &to).await;
            }
        }
    }
}

/// The buttons under a reminder: Extend, and Destroy now (which asks to confirm).
pub(super) fn reminder_buttons(env: i64) -> Value {
    json!([row(vec![
        button("Extend", PRIMARY, format!("env:extend:{env}"), false),
        button("Destroy now", DANGER, format!("env:destroy:{env}"), false),
    ])])
}

/// Buttons an environment's event message offers in its state after `kind`.
fn lifecycle_buttons(kind: JobKind, env: i64) -> Vec<Value> {
    let start = button("Start", SUCCESS, format!("env:start:{env}"), false);
    let stop = button("Stop", SECONDARY, format!("env:stop:{env}"), false);
    let destroy = button("Destroy", DANGER, format!("env:destroy:{env}"), false);
    match kind {
        JobKind::Stop => vec![start, destroy],
        JobKind::Destroy => vec![],
        _ => vec![stop, destroy],
    }
}

/// Posts every finished job of an environment with a status thread into it,
/// and archives the thread after teardown.
pub(super) async fn watch_lifecycle(d: Arc<Discord>, mut rx: Receiver<Progress>) {
    loop {
        let p = tokio::select! {
            ev = rx.recv() => match ev {
                Ok(p) => p,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
            _ = d.cancel.cancelled() => return,
        };
        let Some(outcome) = &p.outcome else {
            continue;
        };
        let Some(job) = d.store.job(p.job_id).await.ok().flatten() else {
            continue;
        };
        let Some(thread) = thread_of(&d, job.env_id).await else {
            continue;
        };
        let (text, buttons) = match outcome {
            Outcome::Succeeded(summary) => {
                let mark = match p.kind {
                    JobKind::Create => "🟢",
                    JobKind::Start => "▶️",
                    JobKind::Stop => "⏹️",
                    JobKind::Restart => "🔄",
                    JobKind::Destroy => "🗑️",
                    JobKind::Update => "⬆️",
                    JobKind::Readdress => "🧭",
                    JobKind::Access => "🔑",
                };
                (
                    format!("{mark} {}: {summary}", p.env_name),
                    lifecycle_buttons(p.kind, job.env_id),
                )
            }
            Outcome::Failed(reason) => (
                format!("❌ {} {} failed: {reason}", p.kind, p.env_name),
                if p.kind == JobKind::Create {
                    vec![]
                } else {
                    lifecycle_buttons(JobKind::Start, job.env_id)
                },
            ),
        };
        let mut body = content(&text);
        if !buttons.is_empty() {
            body["components"] = json!([row(buttons)]);
        }
        // The progress message reads best with its final state before the
        // event: the notifier queues that edit as it sees the same outcome,
        // so give it a moment, then let the queue drain. (Cosmetic ordering:
        // under load the event may still come first.)
        tokio::time::sleep(Duration::from_millis(100)).await;
        d.sink.flushed().await;
        post(&d, thread, &body).await;
        let torn_down = p.kind == JobKind::Destroy && matches!(outcome, Outcome::Succeeded(_))
            || p.kind == JobKind::Create && matches!(outcome, Outcome::Failed(_));
        if torn_down {
            channel_call(
                &d,
                "archive thread",
                LightMethod::Patch,
                thread,
                Some(&json!({ "archived": true })),
            )
            .await;
        }
    }
}
