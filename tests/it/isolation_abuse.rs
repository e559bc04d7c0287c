//! A stranger cannot make the bot work for free (issue 18): everything anyone
//! can send — refused commands, `/help`, lines that do not parse — counts
//! against one rate limit, checked before anything is written.

use crate::common::{count, Opts, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_is_limited_before_anything_is_written() {
    let t = TestEnv::new(Opts {
        rate_burst: 3,
        ..Opts::default()
    });
    let s = t.start();
    for _ in 0..3 {
        let refused = s.say("eve", "/env create profile:ci-web name:spam").await;
        assert!(refused.text.contains("not in any team"), "{}", refused.text);
    }
    for line in ["/env create profile:ci-web name:spam", "/help", "/nonsense"] {
        let limited = s.say("eve", line).await;
        assert!(
            limited.text.contains("Slow down"),
            "{line}: {}",
            limited.text
        );
    }
    let db = t.dir.path().join("slipway.db");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM audit WHERE actor = 'console:eve'"
        ),
        3,
        "only the commands within the limit were audited"
    );
    assert!(s.say("bob", "/help").await.text.contains("/env"));
    s.stop().await;
}
