//! Matrix test support: a real Synapse ([`synapse`]), people who act through
//! the client-server API ([`person`]), a world of users and rooms, and Slipway
//! with its Matrix adapter running in-process against a
//! [`common::TestEnv`](crate::common::TestEnv)'s fakepve.
#![allow(dead_code)]

pub mod person;
pub mod synapse;

// Each test file uses some of these.
#[allow(unused_imports)]
pub use person::{eventually, shown, wait_message, Person, Shown};
#[allow(unused_imports)]
pub use synapse::{Limits, Synapse};

use crate::common::TestEnv;
use slipway::app::App;
use slipway::chat::matrix::MatrixAdapter;
use slipway::dispatch::Dispatcher;
use std::sync::Arc;
use std::time::Duration;

/// The users and rooms of a Matrix test world.
pub struct World {
    pub synapse: Synapse,
    pub bot: Person,
    /// A team web admin.
    pub alice: Person,
    /// A team web member.
    pub bob: Person,
    /// In no team.
    pub eve: Person,
    /// Created by alice; bob and the bot are in it.
    pub room: String,
    /// Created by alice; approval cards go here.
    pub admin_room: String,
    /// Created by alice; environment threads go here when configured.
    pub status_room: String,
}

impl World {
    pub async fn new(limits: Limits) -> World {
        let synapse = Synapse::start_with(limits).await;
        let bot = synapse.register("slipway", false).await;
        let alice = synapse.register("alice", true).await;
        let bob = synapse.register("bob", false).await;
        let eve = synapse.register("eve", false).await;
        let room = alice
            .create_room(&[&bot.user_id, &bob.user_id, &eve.user_id], &[], false)
            .await;
        bob.join(&room).await;
        eve.join(&room).await;
        let admin_room = alice
            .create_room(&[&bot.user_id, &bob.user_id, &eve.user_id], &[], false)
            .await;
        bob.join(&admin_room).await;
        eve.join(&admin_room).await;
        let status_room = alice
            .create_room(&[&bot.user_id, &bob.user_id], &[], false)
            .await;
        bob.join(&status_room).await;
        World {
            synapse,
            bot,
            alice,
            bob,
            eve,
            room,
            admin_room,
            status_room,
        }
    }

    /// Binds team web's members and admins to Matrix users and writes the
    /// `[matrix]` section (the bot logs in with its password, from a file).
    pub fn configure(&self, t: &TestEnv, with_status_room: bool) {
        t.edit_config(
            r#"members = { console = ["web-dev"] }"#,
            &format!(
                r#"members = {{ console = ["web-dev"], matrix = ["{}"] }}"#,
                self.bob.user_id
            ),
        );
        t.edit_config(
            r#"admins = { console = ["web-admin"] }"#,
            &format!(
                r#"admins = {{ console = ["web-admin"], matrix = ["{}"] }}"#,
                self.alice.user_id
            ),
        );
        std::fs::write(t.dir.path().join("matrix-password"), &self.bot.password).unwrap();
        let mut text = std::fs::read_to_string(&t.config_path).unwrap();
        text.push_str(&format!(
            "\n[matrix]\nhomeserver = \"{}\"\nuser_id = \"{}\"\npassword_file = \"matrix-password\"\nstore_dir = \"matrix-store\"\nadmin_room = \"{}\"\n",
            self.synapse.url, self.bot.user_id, self.admin_room
        ));
        if with_status_room {
            text.push_str(&format!("status_room = \"{}\"\n", self.status_room));
        }
        std::fs::write(&t.config_path, text).unwrap();
    }
}

/// Slipway in-process with its Matrix adapter.
pub struct Bot {
    pub app: Option<App>,
    pub dispatcher: Dispatcher,
}

impl Bot {
    pub async fn start(t: &TestEnv) -> Bot {
        Self::start_with_clock(t, Arc::new(slipway::clock::SystemClock)).await
    }

    /// Like `start`, with a clock the test controls.
    pub async fn start_with_clock(t: &TestEnv, clock: Arc<dyn slipway::clock::Clock>) -> Bot {
        let config = t.config();
        let matrix = config.matrix.clone().expect("a [matrix] section");
        let app = App::build_with_clock(config, clock).expect("build the app");
        let adapter = MatrixAdapter::connect(matrix, &app.catalog)
            .await
            .unwrap_or_else(|e| panic!("the bot cannot connect: {e}"));
        app.start(vec![adapter.sink()]);
        adapter.spawn(app.dispatcher(), &app.tracker, app.cancel.clone());
        let dispatcher = app.dispatcher();
        Bot {
            app: Some(app),
            dispatcher,
        }
    }

    /// Makes the lifetime scheduler look at the clock now.
    pub fn wake_scheduler(&self) {
        self.app.as_ref().unwrap().schedule.notify_one();
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown(Duration::from_secs(10)).await;
        }
    }

    /// The environment called `name`, if live.
    pub async fn env(&self, name: &str) -> Option<slipway::store::envs::EnvRecord> {
        self.dispatcher
            .store
            .env_by_name(name.to_string())
            .await
            .unwrap()
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        crate::common::count(&self.dispatcher.config.database, sql)
    }
}

/// Waits until the bot has joined `room`.
pub async fn bot_joined(w: &World, room: &str) {
    eventually(30, "the bot joining the room", || async {
        let members = w.alice.joined_members(room).await;
        if members.contains(&w.bot.user_id) {
            Ok(())
        } else {
            Err(format!("{members:?}"))
        }
    })
    .await
}
