//! (d) Sessions list: `GET /api/v1/sessions`, first page with filters, over 1,000,000 sessions.
//!
//! The bench starts the release server (so it migrates the store), seeds three fleets, 60 machines, 25 members and
//! N sessions straight into its database with SQL (see `list_data`), then times the list as a fleet owner (sees
//! the whole fleet) and as a plain member with grants on three machines (the visibility rule checks the grants row
//! by row): warm-up, then sequential requests, each over a fresh loopback TCP connection (HTTP/1.0), timed from
//! connect to the last byte. It checks every first page against the answer it computes from its own copy of the
//! data. Then, without HTTP, it runs the same SQL as the store builds it on a connection of its own, and prints
//! each query's plan (SQLite: EXPLAIN QUERY PLAN; PostgreSQL: EXPLAIN ANALYZE, custom and generic plan).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use cmdop_protocol::{SessionList, SessionState};
use uuid::Uuid;

use crate::http;
use crate::list_data::{ADMIN, DAY_MS, Db, Filters, MirrorQuery, OWNER, PASSWORD, VIEWER, World};
use crate::proc_stats::{MachineCpu, Window, WindowStats, load_average};
use crate::report::{self, Table};
use crate::server_proc::{Backend, Server, ServerOptions};
use crate::stats::Percentiles;

/// Seed of the data generator: every run (and both backends) get the same sessions.
const SEED: u64 = 0x5E55_1095;
const PAGE: usize = 50;

#[derive(Debug, Clone)]
pub struct ListOptions {
    pub sessions: usize,
    pub requests: usize,
    pub warmup: usize,
    /// Longest time spent on one case (per viewer); it stops early (with fewer samples) after that.
    pub case_budget: Duration,
    pub target_sqlite_ms: f64,
    pub target_postgres_ms: f64,
    /// Also time the SQL alone and print the plans.
    pub explain: bool,
}

impl ListOptions {
    pub fn target_ms(&self, backend: Backend) -> f64 {
        match backend {
            Backend::Sqlite => self.target_sqlite_ms,
            Backend::Postgres => self.target_postgres_ms,
        }
    }
}

/// One filter combination.
struct Case {
    name: &'static str,
    fleet: Option<&'static str>,
    machine: Option<&'static str>,
    user: Option<&'static str>,
    state: Option<&'static str>,
    /// `range=` and its span.
    range: Option<(&'static str, i64)>,
    /// A custom window: since / until, days before the newest data.
    window_days: Option<(i64, i64)>,
    /// Time the second page (through the first page's `next_cursor`).
    page2: bool,
    /// Also as the owner signed in with the login cookie (no token bookkeeping per request).
    cookie: bool,
}

const NONE: Case = Case {
    name: "",
    fleet: None,
    machine: None,
    user: None,
    state: None,
    range: None,
    window_days: None,
    page2: false,
    cookie: false,
};

/// The viewer may see prod-web-1, prod-api-1 and prod-db-1 only; prod-worker-1 is not granted to them.
fn cases() -> Vec<Case> {
    let week = ("1w", 7 * DAY_MS);
    vec![
        Case { name: "no filter", cookie: true, ..NONE },
        Case { name: "fleet", fleet: Some("prod"), ..NONE },
        Case { name: "fleet + machine", fleet: Some("prod"), machine: Some("prod-web-1"), ..NONE },
        Case { name: "fleet + user", fleet: Some("prod"), user: Some(ADMIN), ..NONE },
        Case { name: "fleet + range=1w", fleet: Some("prod"), range: Some(week), ..NONE },
        Case {
            name: "fleet + machine + user + range=1w",
            fleet: Some("prod"),
            machine: Some("prod-web-1"),
            user: Some(ADMIN),
            range: Some(week),
            cookie: true,
            ..NONE
        },
        Case { name: "state=active", state: Some("active"), ..NONE },
        Case { name: "since + until (200 to 170 days back)", window_days: Some((200, 170)), ..NONE },
        Case { name: "fleet, page 2 (next_cursor)", fleet: Some("prod"), page2: true, ..NONE },
        Case {
            name: "fleet + machine the member may not see",
            fleet: Some("prod"),
            machine: Some("prod-worker-1"),
            ..NONE
        },
        Case { name: "fleet neither viewer is in", fleet: Some("staging"), ..NONE },
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    Token,
    Cookie,
}

struct Viewer {
    label: &'static str,
    email: &'static str,
    auth: Auth,
    header: String,
}

/// A case's filters at one moment, for the query string, the SQL and the expected page.
struct Resolved {
    query: Vec<(&'static str, String)>,
    filters: Filters,
    /// For named ranges: the span (the server takes `now` itself).
    range_ms: Option<i64>,
}

impl Resolved {
    fn new(case: &Case, newest_ms: i64) -> Resolved {
        let mut query = Vec::new();
        let mut filters = Filters { limit: PAGE as i64, ..Default::default() };
        if let Some(v) = case.fleet {
            query.push(("fleet", v.to_string()));
            filters.fleet = Some(v.to_string());
        }
        if let Some(v) = case.machine {
            query.push(("machine", v.to_string()));
            filters.machine = Some(v.to_string());
        }
        if let Some(v) = case.user {
            query.push(("user", v.to_string()));
            filters.user = Some(v.to_string());
        }
        if let Some(v) = case.state {
            query.push(("state", v.to_string()));
            filters.active = Some(v == "active");
        }
        if let Some((name, _)) = case.range {
            query.push(("range", name.to_string()));
        }
        if let Some((since, until)) = case.window_days {
            // Whole seconds, as a person would type them.
            let at = |days: i64| (newest_ms - days * DAY_MS) / 1000 * 1000;
            filters.since_ms = Some(at(since));
            filters.until_ms = Some(at(until));
            query.push(("since", rfc3339(at(since))));
            query.push(("until", rfc3339(at(until))));
        }
        Resolved { query, filters, range_ms: case.range.map(|(_, ms)| ms) }
    }

    fn path(&self, cursor: Option<&str>) -> String {
        let mut parts: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={}", http::encode(v))).collect();
        if let Some(c) = cursor {
            parts.push(format!("cursor={}", http::encode(c)));
        }
        if parts.is_empty() { "/api/v1/sessions".into() } else { format!("/api/v1/sessions?{}", parts.join("&")) }
    }

    /// The query string as people read it (not encoded).
    fn shown(&self, page2: bool) -> String {
        let mut parts: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if page2 {
            parts.push("cursor=…".into());
        }
        if parts.is_empty() { "—".into() } else { format!("`{}`", parts.join("&")) }
    }
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).expect("time in range").to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// What the world says the page is: ids, newest first, at most `PAGE`.
fn expected(w: &World, visible: &[bool], f: &Filters, since_ms: Option<i64>) -> Vec<Uuid> {
    let fleet = f.fleet.as_deref().and_then(|n| w.fleets.iter().position(|x| x.name == n));
    let machine = f.machine.as_deref().and_then(|n| w.machines.iter().position(|x| x.name == n));
    let user = f.user.as_deref().and_then(|n| w.members.iter().position(|x| x.email == n));
    if (f.fleet.is_some() && fleet.is_none())
        || (f.machine.is_some() && machine.is_none())
        || (f.user.is_some() && user.is_none())
    {
        return Vec::new();
    }
    w.sessions
        .iter()
        .rev()
        .filter(|r| {
            let mi = r.machine as usize;
            visible[mi]
                && fleet.is_none_or(|x| w.machines[mi].fleet == x)
                && machine.is_none_or(|x| mi == x)
                && user.is_none_or(|x| r.user as usize == x)
                && f.active.is_none_or(|a| r.ended.is_none() == a)
                && since_ms.is_none_or(|s| r.started >= s)
                && f.until_ms.is_none_or(|u| r.started < u)
                && f.after.is_none_or(|(at, id)| r.started < at || (r.started == at && r.id < id))
        })
        .take(PAGE)
        .map(|r| r.id)
        .collect()
}

/// Whether the server's page is the right one; if not, what is wrong with it (which filter it did not apply).
fn check_page(
    w: &World,
    visible: &[bool],
    r: &Resolved,
    list: &SessionList,
    sent_ms: i64,
    received_ms: i64,
) -> Result<(), String> {
    let got: Vec<Uuid> = list.sessions.iter().map(|s| s.id).collect();
    let right = match r.range_ms {
        None => got == expected(w, visible, &r.filters, r.filters.since_ms),
        Some(span) => {
            // The server took `now` between sending and receiving: anything between the two answers is right.
            let loose = expected(w, visible, &r.filters, Some(sent_ms - span - 1000));
            let strict = expected(w, visible, &r.filters, Some(received_ms - span + 1000));
            loose.starts_with(&got) && got.len() >= strict.len()
        }
    };
    if right {
        return Ok(());
    }
    let since = r.filters.since_ms.or(r.range_ms.map(|span| received_ms - span - 1000));
    let mut wrong: Vec<&str> = Vec::new();
    let mut note = |what: &'static str| {
        if !wrong.contains(&what) {
            wrong.push(what);
        }
    };
    for s in &list.sessions {
        let f = &r.filters;
        if f.fleet.as_ref().is_some_and(|v| *v != s.fleet) {
            note("fleet");
        }
        if f.machine.as_ref().is_some_and(|v| *v != s.machine) {
            note("machine");
        }
        if f.user.as_ref().is_some_and(|v| *v != s.user) {
            note("user");
        }
        if f.active.is_some_and(|a| a != (s.state == SessionState::Active)) {
            note("state");
        }
        let started = s.started_at.timestamp_millis();
        if since.is_some_and(|v| started < v) {
            note(if r.range_ms.is_some() { "range" } else { "since" });
        }
        if f.until_ms.is_some_and(|v| started >= v) {
            note("until");
        }
        if w.machines.iter().position(|m| m.name == s.machine).is_none_or(|mi| !visible[mi]) {
            note("visibility");
        }
    }
    if list.sessions.windows(2).any(|p| (p[0].started_at, p[0].id) <= (p[1].started_at, p[1].id)) {
        note("order");
    }
    if wrong.is_empty() {
        Err(format!("{} rows, not the expected ones", got.len()))
    } else {
        Err(format!("{} rows; not applied: {}", got.len(), wrong.join(", ")))
    }
}

/// One case as one viewer.
pub struct Measured {
    case: &'static str,
    viewer: String,
    shown: String,
    status: u16,
    rows: usize,
    check: Result<(), String>,
    http: Percentiles,
    server_timing: Option<Percentiles>,
    sql: Option<(Percentiles, usize)>,
    /// The same with the names looked up first (`= id`), when the case filters by name.
    sql_ids: Option<(Percentiles, usize)>,
    plan: Option<String>,
    plan_cache: Option<(i64, i64)>,
    busy: f64,
    load: f64,
    errors: Vec<String>,
}

pub struct ListResult {
    pub backend: String,
    target_ms: f64,
    sessions: usize,
    active: usize,
    seed_time: Duration,
    db_bytes: u64,
    window: WindowStats,
    pg_cpu: Option<Duration>,
    measured: Vec<Measured>,
    server_problems: usize,
    opts: ListOptions,
}

pub async fn run(opts: &ListOptions, server_opts: &ServerOptions, backend: Backend) -> anyhow::Result<ListResult> {
    let mut server_opts = server_opts.clone();
    // The seeded active sessions have no recorder: keep the recorder-lost sweep from ending them mid-run.
    server_opts.serve_args.extend(["--recorder-grace".to_string(), "3650days".to_string()]);
    let server = Server::start(&server_opts, backend).await?;
    let name = backend.name();
    let mut tokens = Vec::new();
    for (email, display) in [(OWNER, "Olivia Owner"), (VIEWER, "Vera Viewer")] {
        server.admin(&["member", "add", email, "--password", PASSWORD, "--name", display]).await?;
        let out = server.admin(&["token", "create", email, "--name", "bench-list"]).await?;
        tokens.push(out.lines().last().context("no token printed")?.trim().to_string());
    }
    let db = Db::connect(backend, server.database_url()).await?;
    let cli_ids = [(OWNER, db.member_id(OWNER).await?), (VIEWER, db.member_id(VIEWER).await?)];
    let now_ms = Utc::now().timestamp_millis();
    eprintln!("list [{name}]: generating {} sessions ...", opts.sessions);
    let world = World::generate(opts.sessions, now_ms, &cli_ids, SEED);
    eprintln!("list [{name}]: seeding ...");
    let seed_start = Instant::now();
    let total = world.sessions.len();
    let progress = |done: usize| {
        if done % 200_000 < 50_000 || done == total {
            eprintln!("list [{name}]: {done} of {total} sessions in {:.0} s", seed_start.elapsed().as_secs_f64());
        }
    };
    db.seed(&world, &progress).await.context("seeding")?;
    let seed_time = seed_start.elapsed();
    let db_bytes = db.size_bytes(&server.file("inspector.db")).await?;
    eprintln!("list [{name}]: seeded in {:.1} s, {:.0} MiB", seed_time.as_secs_f64(), db_bytes as f64 / 1048576.0);

    let login = http::request(
        server.addr,
        "POST",
        "/api/v1/auth/login",
        &["Content-Type: application/json".to_string()],
        Some(serde_json::json!({"email": OWNER, "password": PASSWORD}).to_string().as_bytes()),
    )
    .await?;
    if login.status != 200 {
        bail!("login as {OWNER}: {} {}", login.status, String::from_utf8_lossy(&login.body));
    }
    let cookie = login
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .context("login answered without a cookie")?
        .to_string();
    let owner = Viewer {
        label: "owner",
        email: OWNER,
        auth: Auth::Token,
        header: format!("Authorization: Bearer {}", tokens[0]),
    };
    let member = Viewer {
        label: "member",
        email: VIEWER,
        auth: Auth::Token,
        header: format!("Authorization: Bearer {}", tokens[1]),
    };
    let owner_cookie = Viewer { label: "owner", email: OWNER, auth: Auth::Cookie, header: format!("Cookie: {cookie}") };

    let cases = cases();
    let window = Window::start(server.pid())?;
    let pg_before = server.pg_backends().await?;
    let mut measured = Vec::new();
    for case in &cases {
        let mut viewers = vec![&owner, &member];
        if case.cookie {
            viewers.push(&owner_cookie);
        }
        for v in viewers {
            eprintln!("list [{name}]: {} as {} ({:?}) ...", case.name, v.label, v.auth);
            let m = measure(opts, &server, &world, case, v).await;
            eprintln!(
                "list [{name}]:   p50 {} ms, p95 {} ms over {} requests; page {}",
                report::ms(m.http.p50),
                report::ms(m.http.p95),
                m.http.n,
                match &m.check {
                    Ok(()) => "right".to_string(),
                    Err(e) => format!("WRONG ({e})"),
                }
            );
            measured.push(m);
        }
    }
    let window = window.finish();
    let pg_cpu = match (pg_before, server.pg_backends().await?) {
        (Some(before), Some(after)) => Some(after.since(&before)),
        _ => None,
    };

    if opts.explain {
        for m in measured.iter_mut().filter(|m| m.viewer.ends_with("(token)")) {
            let case = cases.iter().find(|c| c.name == m.case).expect("case");
            let email = if m.viewer.starts_with("owner") { OWNER } else { VIEWER };
            let viewer_id = world.members[world.member(email)].id;
            let mut r = Resolved::new(case, world.now_ms);
            if let Some((_, span)) = case.range {
                r.filters.since_ms = Some(Utc::now().timestamp_millis() - span);
            }
            if case.page2 {
                let visible = world.visible_machines(world.member(email));
                let first = expected(&world, &visible, &r.filters, r.filters.since_ms);
                r.filters.after =
                    first.last().and_then(|id| world.sessions.iter().find(|s| s.id == *id)).map(|s| (s.started, s.id));
            }
            let q = MirrorQuery::build(viewer_id, &r.filters);
            eprintln!("list [{name}]: SQL alone: {} as {} ...", m.case, m.viewer);
            match time_sql(&db, &q, opts).await {
                Ok((p, rows)) => m.sql = Some((p, rows)),
                Err(e) => m.errors.push(format!("SQL alone: {e:#}")),
            }
            m.plan_cache = db.plan_cache(&q).await.unwrap_or(None);
            let mut plan = match db.explain(&q).await {
                Ok(plan) => format!("{}\n\n{}", q.sql, plan),
                Err(e) => format!("EXPLAIN failed: {e:#}"),
            };
            // The variant: names looked up first, then `= id` (what the store does for fleet_id etc.).
            let f = &r.filters;
            if f.fleet.is_some() || f.machine.is_some() || f.user.is_some() {
                let ids = Filters {
                    fleet_id: f
                        .fleet
                        .as_deref()
                        .map(|n| world.fleets[world.fleets.iter().position(|x| x.name == n).expect("fleet")].id),
                    machine_id: f
                        .machine
                        .as_deref()
                        .map(|n| world.machines[world.machines.iter().position(|x| x.name == n).expect("machine")].id),
                    user_id: f.user.as_deref().map(|e| world.members[world.member(e)].id),
                    fleet: None,
                    machine: None,
                    user: None,
                    ..f.clone()
                };
                let q = MirrorQuery::build(viewer_id, &ids);
                match time_sql(&db, &q, opts).await {
                    Ok((p, rows)) => m.sql_ids = Some((p, rows)),
                    Err(e) => m.errors.push(format!("SQL with ids: {e:#}")),
                }
                match db.explain(&q).await {
                    Ok(p) => plan.push_str(&format!(
                        "\n\n---- variant with the names looked up first (= id):\n\n{}\n\n{p}",
                        q.sql
                    )),
                    Err(e) => plan.push_str(&format!("\n\nvariant: EXPLAIN failed: {e:#}")),
                }
            }
            m.plan = Some(plan);
        }
    }
    db.close().await;
    let server_problems = server.log_problems();
    Ok(ListResult {
        backend: server_opts.label(backend),
        target_ms: opts.target_ms(backend),
        sessions: world.sessions.len(),
        active: world.active_count(),
        seed_time,
        db_bytes,
        window,
        pg_cpu,
        measured,
        server_problems,
        opts: opts.clone(),
    })
}

/// Runs the mirror query like the HTTP loop: warm-up, then up to `requests` runs within half the case budget.
async fn time_sql(db: &Db, q: &MirrorQuery, opts: &ListOptions) -> anyhow::Result<(Percentiles, usize)> {
    db.time_query(q, opts.warmup).await?;
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut rows = 0;
    while samples.len() < opts.requests && (start.elapsed() < opts.case_budget / 2 || samples.len() < 20) {
        let (s, n) = db.time_query(q, 1).await?;
        samples.extend(s);
        rows = n;
    }
    Ok((Percentiles::of(samples), rows))
}

async fn measure(opts: &ListOptions, server: &Server, w: &World, case: &Case, v: &Viewer) -> Measured {
    let r = Resolved::new(case, w.now_ms);
    let visible = w.visible_machines(w.member(v.email));
    let mut m = Measured {
        case: case.name,
        viewer: format!("{} ({})", v.label, if v.auth == Auth::Token { "token" } else { "cookie" }),
        shown: r.shown(case.page2),
        status: 0,
        rows: 0,
        check: Err("not checked".into()),
        http: Percentiles::default(),
        server_timing: None,
        sql: None,
        sql_ids: None,
        plan: None,
        plan_cache: None,
        busy: 0.0,
        load: 0.0,
        errors: Vec::new(),
    };
    let headers = [v.header.clone()];
    let get = |path: String| {
        let headers = headers.clone();
        async move { http::request(server.addr, "GET", &path, &headers, None).await }
    };
    let parse = |resp: &http::Response| -> anyhow::Result<SessionList> {
        serde_json::from_slice(&resp.body).with_context(|| {
            format!("{} {}", resp.status, String::from_utf8_lossy(&resp.body[..resp.body.len().min(300)]))
        })
    };

    // The path to time (page 2: through page 1's cursor), and the check of its answer.
    let mut r = r;
    let path = if case.page2 {
        let first = match get(r.path(None)).await.and_then(|resp| parse(&resp)) {
            Ok(l) => l,
            Err(e) => {
                m.errors.push(format!("first page: {e:#}"));
                return m;
            }
        };
        let Some(cursor) = first.next_cursor.clone() else {
            m.errors.push("first page had no next_cursor".into());
            return m;
        };
        r.filters.after = first.sessions.last().map(|s| (s.started_at.timestamp_millis(), s.id));
        r.path(Some(&cursor))
    } else {
        r.path(None)
    };
    let sent = Utc::now().timestamp_millis();
    match get(path.clone()).await {
        Ok(resp) => {
            m.status = resp.status;
            let received = Utc::now().timestamp_millis();
            match parse(&resp) {
                Ok(list) => {
                    m.rows = list.sessions.len();
                    m.check = check_page(w, &visible, &r, &list, sent, received);
                }
                Err(e) => m.check = Err(format!("{e:#}")),
            }
        }
        Err(e) => {
            m.errors.push(format!("{e:#}"));
            return m;
        }
    }

    let mut samples = Vec::with_capacity(opts.requests);
    let mut timings = Vec::new();
    let cpu = MachineCpu::now();
    m.load = load_average();
    let start = Instant::now();
    for i in 0..opts.warmup + opts.requests {
        if i >= opts.warmup && start.elapsed() > opts.case_budget && samples.len() >= 20 {
            break;
        }
        let t0 = Instant::now();
        let resp = get(path.clone()).await;
        let us = t0.elapsed().as_micros() as u64;
        match resp {
            Ok(resp) if resp.status == m.status => {
                if i >= opts.warmup {
                    samples.push(us);
                    if let Some(st) = resp.header("server-timing").and_then(http::server_timing_ms) {
                        timings.push((st * 1000.0) as u64);
                    }
                }
            }
            Ok(resp) => m.errors.push(format!("status {} (first was {})", resp.status, m.status)),
            Err(e) => m.errors.push(format!("{e:#}")),
        }
        if m.errors.len() > 5 {
            m.errors.push("gave up after 5 errors".into());
            break;
        }
    }
    m.busy = cpu.busy_percent_until(&MachineCpu::now());
    m.http = Percentiles::of(samples);
    if !timings.is_empty() {
        m.server_timing = Some(Percentiles::of(timings));
    }
    m
}

pub fn table(results: &[ListResult]) -> String {
    let mut md = String::new();
    for r in results {
        let o = &r.opts;
        md.push_str(&format!(
            "\n**{}**: {} sessions ({} active) in 3 fleets, 60 machines, 25 members; seeded with SQL in {:.0} s, \
             database {:.0} MiB. Target p95 ≤ {} ms. {} + {} warm-up requests per row (fewer if a row took over \
             {} s), sequential.\n\n",
            r.backend,
            r.sessions,
            r.active,
            r.seed_time.as_secs_f64(),
            r.db_bytes as f64 / 1048576.0,
            r.target_ms,
            o.requests,
            o.warmup,
            o.case_budget.as_secs()
        ));
        let mut t = Table::new(&[
            "case",
            "viewer",
            "query",
            "status",
            "rows",
            "right page",
            "n",
            "p50 ms",
            "**p95 ms**",
            "max ms",
            "SQL alone p50 / p95 ms",
            "SQL with ids p50 / p95 ms",
            "machine busy",
            "load 1m",
            "p95 ≤ target",
        ]);
        for m in &r.measured {
            let ok = m.http.n > 0 && m.errors.is_empty() && m.check.is_ok();
            t.row(vec![
                m.case.to_string(),
                m.viewer.clone(),
                m.shown.clone(),
                m.status.to_string(),
                m.rows.to_string(),
                match &m.check {
                    Ok(()) => "yes".into(),
                    Err(e) => format!("**no**: {e}"),
                },
                m.http.n.to_string(),
                report::ms(m.http.p50),
                format!("**{}**", report::ms(m.http.p95)),
                report::ms(m.http.max),
                m.sql.as_ref().map_or("—".into(), |(p, _)| format!("{} / {}", report::ms(p.p50), report::ms(p.p95))),
                m.sql_ids
                    .as_ref()
                    .map_or("—".into(), |(p, _)| format!("{} / {}", report::ms(p.p50), report::ms(p.p95))),
                format!("{:.0}%", m.busy),
                format!("{:.2}", m.load),
                if !ok { "n/a".into() } else { report::yes_no(m.http.p95 as f64 / 1000.0 <= r.target_ms).to_string() },
            ]);
        }
        md.push_str(&t.to_markdown());
        let w = &r.window;
        md.push_str(&format!(
            "\n{}: over all the HTTP rows ({:.0} s) the server used {}{}; the whole machine was {:.0}% busy (2 cores), \
             load {:.2}→{:.2}; the bench itself used {}.",
            r.backend,
            w.process.map_or(0.0, |p| p.wall.as_secs_f64()),
            w.process.map_or("—".into(), |p| format!(
                "{} CPU, peak RSS {} MiB",
                report::cpu(p.cpu, p.wall),
                report::mib(p.peak_rss)
            )),
            r.pg_cpu
                .zip(w.process)
                .map_or(String::new(), |(c, p)| format!(", its PostgreSQL backends {}", report::cpu(c, p.wall))),
            w.machine_busy,
            w.load_start,
            w.load_end,
            w.process.map_or("—".into(), |p| report::cpu(w.bench_cpu, p.wall)),
        ));
        if r.server_problems > 0 {
            md.push_str(&format!(" The server logged {} warnings/errors.", r.server_problems));
        }
        let timed: Vec<&Measured> = r.measured.iter().filter(|m| m.server_timing.is_some()).collect();
        if timed.is_empty() {
            md.push_str(" The server sends no `Server-Timing` header, so only the loopback timing is shown.");
        } else {
            for m in timed {
                let p = m.server_timing.expect("timed");
                md.push_str(&format!(
                    " Server-Timing, {} as {}: p50 {} / p95 {} ms.",
                    m.case,
                    m.viewer,
                    report::ms(p.p50),
                    report::ms(p.p95)
                ));
            }
        }
        let cache: Vec<(&Measured, i64, i64)> =
            r.measured.iter().filter_map(|m| m.plan_cache.map(|(g, c)| (m, g, c))).collect();
        if !cache.is_empty() {
            let generic: Vec<String> = cache
                .iter()
                .filter(|(_, g, _)| *g > 0)
                .map(|(m, g, c)| format!("{} as {}: {g} generic / {c} custom", m.case, m.viewer))
                .collect();
            if generic.is_empty() {
                md.push_str(
                    "\n\nPostgreSQL's plan cache stayed with custom plans: pg_prepared_statements shows 0 generic plans \
                     for every statement the SQL-alone runs prepared (as the server's sqlx does, plan_cache_mode auto).",
                );
            } else {
                md.push_str(&format!(
                    "\n\nPostgreSQL's plan cache switched to generic plans for: {} (pg_prepared_statements).",
                    generic.join("; ")
                ));
            }
        }
        md.push('\n');
        for m in r.measured.iter().filter(|m| !m.errors.is_empty()) {
            md.push_str(&format!(
                "\n- {} as {}: {}",
                m.case,
                m.viewer,
                m.errors.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            ));
        }
        md.push('\n');
    }
    md.push_str(
        "\nTimes are per request over loopback TCP (a fresh connection each, HTTP/1.0, no compression), from connect \
         to the last byte: the server's routing, authentication (API token: a lookup plus the `last_used_at` \
         update; cookie: a lookup), the list query, the clients and gaps of the page's sessions, and the JSON. \
         \"SQL alone\" runs the list query as the store builds it (copied from store/src/sql.rs), prepared, on a \
         connection of the bench's own, without HTTP, auth or the page's clients and gaps; \"SQL with ids\" is the \
         same query with the fleet/machine/user names looked up first and compared by id (`s.fleet_id = $n` instead \
         of `s.fleet_id IN (SELECT id FROM fleets WHERE name = $n)`), a proposal, not what the server runs. \
         \"right page\" compares the page with the one the bench computes from the data it generated.\n",
    );
    md
}

/// The plans, one `<details>` block per case and viewer.
pub fn plans(results: &[ListResult]) -> String {
    let mut md = String::new();
    for r in results {
        for m in r.measured.iter().filter(|m| m.plan.is_some()) {
            md.push_str(&format!(
                "\n<details><summary>{}: {} as {} ({})</summary>\n\n```\n{}\n```\n\n</details>\n",
                r.backend,
                m.case,
                m.viewer,
                m.shown.trim_matches('`'),
                m.plan.as_deref().unwrap_or_default().trim_end()
            ));
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_encoded() {
        let case = &cases()[5];
        let r = Resolved::new(case, 0);
        assert_eq!(r.path(None), "/api/v1/sessions?fleet=prod&machine=prod-web-1&user=admin%40acme.test&range=1w");
        assert_eq!(r.shown(false), "`fleet=prod&machine=prod-web-1&user=admin@acme.test&range=1w`");
        let r = Resolved::new(&cases()[7], 300 * DAY_MS + 1234);
        assert_eq!(r.path(None), "/api/v1/sessions?since=1970-04-11T00%3A00%3A01Z&until=1970-05-11T00%3A00%3A01Z");
        assert_eq!(Resolved::new(&cases()[0], 0).path(Some("a=b")), "/api/v1/sessions?cursor=a%3Db");
    }

    #[test]
    fn expected_pages_follow_the_visibility_rule() {
        let w = World::generate(50_000, 1_800_000_000_000, &[], 1);
        let member = w.visible_machines(w.member(VIEWER));
        let all = vec![true; w.machines.len()];
        let f = Filters { fleet: Some("prod".into()), limit: 50, ..Default::default() };
        let page = expected(&w, &member, &f, None);
        assert_eq!(page.len(), PAGE);
        for id in &page {
            let r = w.sessions.iter().find(|r| r.id == *id).unwrap();
            assert!(member[r.machine as usize]);
        }
        // Unknown names match nothing; the owner sees more than the member.
        let nothing = Filters { fleet: Some("nope".into()), ..f.clone() };
        assert!(expected(&w, &all, &nothing, None).is_empty());
        let newest = expected(&w, &all, &f, None)[0];
        let newest_prod = w.sessions.iter().rev().find(|r| w.machines[r.machine as usize].fleet == 0).unwrap();
        assert_eq!(newest, newest_prod.id);
    }
}
