//! The store conformance suite: every test runs against SQLite and PostgreSQL.
//!
//! The tests state what users of the store rely on (visibility, pagination, transcript integrity, validation),
//! with expectations computed from the test's own data, not from the implementation.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, TimeZone, Utc};
use cmdop_protocol::{ClientKind, EndReason, GapInfo, GapReason, Session, SessionState};
use cmdop_store::testing::{TestStore, new_session};
use cmdop_store::*;
use uuid::Uuid;

cmdop_store::for_each_backend!(
    smoke_session_round_trip,
    // fleets
    fleet_create_and_lookup,
    fleet_defaults,
    fleet_duplicate_name_already_exists,
    fleet_invalid_names_are_rejected,
    fleet_by_name_unknown_is_not_found,
    list_fleets_sorted_by_name,
    // members
    member_create_and_lookup,
    member_email_is_unique_case_insensitively,
    member_invalid_email_is_rejected,
    password_login_record_returns_hash,
    member_display_name_defaults_to_local_part,
    // memberships, machines, grants
    memberships_list_fleets_with_roles,
    machine_names_are_unique_per_fleet,
    grant_machine_twice_already_exists,
    // credentials
    api_token_lookup_by_digest,
    login_session_expires_with_the_clock,
    delete_login_session_ends_it,
    // visibility
    visibility_owner_and_admin_see_their_whole_fleet,
    visibility_member_sees_only_granted_machines,
    visibility_member_without_grant_sees_nothing,
    visibility_member_of_no_fleet_sees_nothing,
    visibility_member_of_other_fleet_sees_only_that_fleet,
    visibility_grant_without_membership_sees_nothing,
    visibility_share_sees_exactly_one_session,
    visibility_filters_cannot_widen_what_a_viewer_sees,
    visibility_filters_by_name_match_only_what_the_viewer_sees,
    visibility_counts_follow_filters_and_visibility,
    // listing
    list_pages_in_started_at_then_id_order,
    pagination_is_stable_when_sessions_arrive_between_pages,
    garbage_cursor_is_invalid,
    list_filters_select_matching_sessions,
    list_since_must_be_before_until,
    list_limit_is_clamped,
    // transcript
    transcript_binary_bytes_round_trip,
    transcript_read_from_middle_offset,
    transcript_idempotent_resend_stores_nothing_twice,
    transcript_write_racing_another_replica_stores_each_byte_once,
    transcript_write_racing_another_replicas_gap_stores_none_of_its_rows,
    transcript_resend_with_different_bytes_conflicts,
    transcript_resend_off_chunk_boundary_with_different_bytes_conflicts,
    transcript_hole_conflicts_and_stores_nothing,
    append_to_unknown_session_is_not_found,
    // sessions
    session_detail_fields,
    end_session_records_outcome_and_duration,
    active_session_duration_grows_with_the_clock,
    end_session_twice_conflicts,
    end_session_detaches_attached_clients,
    clients_attach_and_detach,
    create_session_rejects_bad_input,
    // timestamps
    timestamps_round_trip_at_millisecond_precision,
    time_filters_compare_sub_millisecond_bounds_exactly,
);

// ------------------------------------------------------------------------------------------------------------
// helpers

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, ms: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap() + Duration::milliseconds(ms)
}

async fn fleet(t: &TestStore, name: &str) -> Fleet {
    t.store.create_fleet(name).await.unwrap()
}

fn new_member(email: &str) -> NewMember {
    NewMember { email: email.into(), display_name: String::new(), password_hash: None, is_bot: false }
}

async fn member(t: &TestStore, email: &str) -> Member {
    t.store.create_member(new_member(email)).await.unwrap()
}

async fn machine(t: &TestStore, fleet: &Fleet, name: &str) -> Machine {
    t.store.create_machine(fleet.id, name).await.unwrap()
}

async fn start(t: &TestStore, machine: &Machine, by: &Member) -> Uuid {
    t.store.create_session(new_session(machine, by)).await.unwrap()
}

async fn start_at(t: &TestStore, machine: &Machine, by: &Member, at: DateTime<Utc>) -> Uuid {
    t.store.create_session(NewSession { started_at: Some(at), ..new_session(machine, by) }).await.unwrap()
}

fn exited(code: i32) -> SessionEnd {
    SessionEnd { exit_code: Some(code), exit_signal: None, reason: EndReason::Exited, ended_at: None }
}

fn chunk(offset: u64, bytes: &[u8]) -> OutputChunk {
    OutputChunk { offset, t_ms: offset * 3, bytes: bytes.to_vec() }
}

/// A member who owns `fleets`.
async fn owner_of(t: &TestStore, email: &str, fleets: &[&Fleet]) -> Member {
    let m = member(t, email).await;
    for f in fleets {
        t.store.add_fleet_member(f.id, m.id, Role::Owner).await.unwrap();
    }
    m
}

/// Every session of `query` for `viewer`, following `next_cursor` to the end. Checks that only the last page
/// lacks a cursor and that no page after the first is empty.
async fn list_all(t: &TestStore, viewer: &Viewer, query: &SessionQuery) -> Vec<Session> {
    let mut query = query.clone();
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 10_000, "pagination does not end");
        let page = t.store.list_sessions(viewer, &query).await.unwrap_or_else(|e| panic!("list {query:?}: {e}"));
        if pages > 1 {
            assert!(!page.sessions.is_empty(), "page {pages} (reached through a next_cursor) is empty");
        }
        all.extend(page.sessions);
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => return all,
        }
    }
}

fn ids(sessions: &[Session]) -> Vec<Uuid> {
    sessions.iter().map(|s| s.id).collect()
}

/// The list order: started_at descending, then id descending.
fn newest_first(mut v: Vec<(DateTime<Utc>, Uuid)>) -> Vec<Uuid> {
    v.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    v.into_iter().map(|(_, id)| id).collect()
}

async fn transcript_info(t: &TestStore, viewer: &Viewer, id: Uuid) -> cmdop_protocol::TranscriptInfo {
    t.store.session(viewer, id).await.unwrap().transcript
}

// ------------------------------------------------------------------------------------------------------------
// smoke

async fn smoke_session_round_trip(t: TestStore) {
    let s = &t.store;
    let fleet = s.create_fleet("acme").await.unwrap();
    let m = s
        .create_member(NewMember {
            email: "a@x.io".into(),
            display_name: "".into(),
            password_hash: None,
            is_bot: false,
        })
        .await
        .unwrap();
    s.add_fleet_member(fleet.id, m.id, Role::Owner).await.unwrap();
    let machine = s.create_machine(fleet.id, "web-1").await.unwrap();
    let id = s
        .create_session(NewSession {
            fleet_id: fleet.id,
            machine_id: machine.id,
            started_by: m.id,
            command: "ls".into(),
            cols: 80,
            rows: 24,
            chat_thread_id: None,
            started_at: None,
        })
        .await
        .unwrap();
    s.append_output(
        id,
        &[
            OutputChunk { offset: 0, t_ms: 0, bytes: b"hello ".to_vec() },
            OutputChunk { offset: 6, t_ms: 5, bytes: b"world".to_vec() },
        ],
    )
    .await
    .unwrap();
    t.clock.advance(chrono::Duration::milliseconds(1500));
    s.end_session(
        id,
        SessionEnd { exit_code: Some(3), exit_signal: None, reason: cmdop_protocol::EndReason::Exited, ended_at: None },
    )
    .await
    .unwrap();
    let v = Viewer::Member(m.id);
    let got = s.session(&v, id).await.unwrap();
    assert_eq!(got.exit_code, Some(3));
    assert_eq!(got.duration_ms, 1500);
    let tr = s.read_transcript(&v, id, 3).await.unwrap();
    assert_eq!(tr.bytes, b"lo world");
    assert_eq!(tr.start_offset, 3);
    let list = s.list_sessions(&v, &SessionQuery::default()).await.unwrap();
    assert_eq!(list.sessions.len(), 1);
}

// ------------------------------------------------------------------------------------------------------------
// fleets

async fn fleet_create_and_lookup(t: TestStore) {
    let acme = t.store.create_fleet("acme").await.unwrap();
    assert_eq!(acme.name, "acme");
    assert_eq!(acme.created_at, t.clock.now());
    assert_eq!(t.store.fleet_by_name("acme").await.unwrap(), acme);

    // Surrounding blanks are not part of a name.
    let ops = t.store.create_fleet("  ops  ").await.unwrap();
    assert_eq!(ops.name, "ops");
    assert_ne!(ops.id, acme.id);
    assert_eq!(t.store.fleet_by_name("ops").await.unwrap(), ops);
    assert_eq!(t.store.fleet_by_name("acme").await.unwrap(), acme);

    // A name of 100 characters is fine, one of 101 is not.
    let long = "x".repeat(100);
    assert_eq!(t.store.create_fleet(&long).await.unwrap().name, long);
    assert_err!(t.store.create_fleet(&"y".repeat(101)).await, StoreError::Invalid { field: "fleet", .. });
}

async fn fleet_defaults(t: TestStore) {
    let f = fleet(&t, "acme").await;
    assert_eq!(f.retention_days, 90);
    assert_eq!((f.retention_min_days, f.retention_max_days), (30, 365));
    assert!(f.retention_min_days <= f.retention_days && f.retention_days <= f.retention_max_days);
    assert_eq!(f.transcript_limit_bytes, 8 * 1024 * 1024);
    assert_eq!(f.transcript_limit_bytes, DEFAULT_TRANSCRIPT_LIMIT_BYTES);
    assert_eq!(f.cabinet_command_policy, CabinetCommandPolicy::Flag);
    // The defaults are what is stored, not only what create_fleet returns.
    assert_eq!(t.store.fleet_by_name("acme").await.unwrap(), f);
    assert_eq!(t.store.list_fleets().await.unwrap(), vec![f]);
}

async fn fleet_duplicate_name_already_exists(t: TestStore) {
    let first = fleet(&t, "acme").await;
    assert_err!(t.store.create_fleet("acme").await, StoreError::AlreadyExists(_));
    assert_err!(t.store.create_fleet("  acme ").await, StoreError::AlreadyExists(_));
    assert_eq!(t.store.list_fleets().await.unwrap(), vec![first]);
}

async fn fleet_invalid_names_are_rejected(t: TestStore) {
    for bad in ["", " ", "   \t  ", "\n", "a\nb", "nul\0byte", "bell\u{7}", "esc\u{1b}[31m", "del\u{7f}", "nel\u{85}x"]
    {
        assert_err!(t.store.create_fleet(bad).await, StoreError::Invalid { field: "fleet", .. }, "for {bad:?}");
    }
    assert!(t.store.list_fleets().await.unwrap().is_empty(), "an invalid fleet was stored");
}

async fn fleet_by_name_unknown_is_not_found(t: TestStore) {
    assert_err!(t.store.fleet_by_name("acme").await, StoreError::NotFound(_));
    fleet(&t, "acme").await;
    for unknown in ["nope", "acm", "acme2", "acme%", "%"] {
        assert_err!(t.store.fleet_by_name(unknown).await, StoreError::NotFound(_), "for {unknown:?}");
    }
}

async fn list_fleets_sorted_by_name(t: TestStore) {
    assert!(t.store.list_fleets().await.unwrap().is_empty());
    let mut created = Vec::new();
    for name in ["delta", "alpha", "charlie", "bravo", "alpha-2", "echo9", "echo10"] {
        created.push(fleet(&t, name).await);
    }
    created.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(t.store.list_fleets().await.unwrap(), created);
}

// ------------------------------------------------------------------------------------------------------------
// members

async fn member_create_and_lookup(t: TestStore) {
    let hash = secrets::hash_password("correct horse battery");
    let alice = t
        .store
        .create_member(NewMember {
            email: "  Alice.Smith@Example.COM ".into(),
            display_name: "Alice Smith".into(),
            password_hash: Some(hash),
            is_bot: false,
        })
        .await
        .unwrap();
    assert_eq!(alice.email, "alice.smith@example.com");
    assert_eq!(alice.display_name, "Alice Smith");
    assert!(!alice.is_bot);
    assert_eq!(alice.created_at, t.clock.now());

    for spelling in ["alice.smith@example.com", "ALICE.SMITH@example.com", " Alice.Smith@Example.Com\t"] {
        assert_eq!(t.store.member_by_email(spelling).await.unwrap(), alice, "by {spelling:?}");
    }
    assert_eq!(t.store.member_by_id(alice.id).await.unwrap(), alice);

    let bot = t
        .store
        .create_member(NewMember {
            email: "deploy-bot@example.com".into(),
            display_name: "Deploy bot".into(),
            password_hash: None,
            is_bot: true,
        })
        .await
        .unwrap();
    assert!(bot.is_bot);
    assert_ne!(bot.id, alice.id);
    assert_eq!(t.store.member_by_id(bot.id).await.unwrap(), bot);

    assert_err!(t.store.member_by_email("bob@example.com").await, StoreError::NotFound(_));
    assert_err!(t.store.member_by_id(Uuid::now_v7()).await, StoreError::NotFound(_));
}

async fn member_email_is_unique_case_insensitively(t: TestStore) {
    let hash = secrets::hash_password("first password");
    let carol = t
        .store
        .create_member(NewMember { password_hash: Some(hash.clone()), ..new_member("carol@example.com") })
        .await
        .unwrap();
    for dup in ["carol@example.com", "Carol@Example.com", "CAROL@EXAMPLE.COM", "  carol@example.com  "] {
        let attempt = NewMember { password_hash: Some(secrets::hash_password("second password")), ..new_member(dup) };
        assert_err!(t.store.create_member(attempt).await, StoreError::AlreadyExists(_), "for {dup:?}");
    }
    // The first member, with the first password, is the one that stays.
    let (m, h) = t.store.password_login_record("CAROL@example.com").await.unwrap().unwrap();
    assert_eq!(m, carol);
    assert_eq!(h.as_deref(), Some(hash.as_str()));
}

async fn member_invalid_email_is_rejected(t: TestStore) {
    for bad in ["", "   ", "carol", "@example.com", "carol@", "carol smith@example.com", "carol@ex@ample.com"] {
        assert_err!(
            t.store.create_member(new_member(bad)).await,
            StoreError::Invalid { field: "email", .. },
            "for {bad:?}"
        );
    }
    assert_err!(t.store.member_by_email("no-at-sign").await, StoreError::Invalid { field: "email", .. });
}

async fn password_login_record_returns_hash(t: TestStore) {
    let hash = secrets::hash_password("s3cret-pass");
    let dave = t
        .store
        .create_member(NewMember { password_hash: Some(hash.clone()), ..new_member("dave@example.com") })
        .await
        .unwrap();
    let bot = t.store.create_member(NewMember { is_bot: true, ..new_member("bot@example.com") }).await.unwrap();

    let (m, h) = t.store.password_login_record(" Dave@Example.com").await.unwrap().expect("dave");
    assert_eq!(m, dave);
    let h = h.expect("a password hash");
    assert_eq!(h, hash);
    assert!(secrets::verify_password("s3cret-pass", &h));
    assert!(!secrets::verify_password("s3cret-pasS", &h));

    // A member without a password is found, without a hash.
    let (m, h) = t.store.password_login_record("bot@example.com").await.unwrap().expect("bot");
    assert_eq!((m, h), (bot, None));

    assert!(t.store.password_login_record("nobody@example.com").await.unwrap().is_none());
    assert!(t.store.password_login_record("not an email").await.unwrap().is_none());
}

async fn member_display_name_defaults_to_local_part(t: TestStore) {
    let erin = member(&t, "Erin.Jones@Example.com").await;
    assert_eq!(erin.display_name, erin.email.split('@').next().unwrap());
    assert_eq!(erin.display_name, "erin.jones");

    let frank =
        t.store.create_member(NewMember { display_name: "   ".into(), ..new_member("frank@x.io") }).await.unwrap();
    assert_eq!(frank.display_name, "frank");

    let gina =
        t.store.create_member(NewMember { display_name: "Gina G".into(), ..new_member("gina@x.io") }).await.unwrap();
    assert_eq!(gina.display_name, "Gina G");
    assert_eq!(t.store.member_by_id(erin.id).await.unwrap().display_name, "erin.jones");
}

// ------------------------------------------------------------------------------------------------------------
// memberships, machines, grants

async fn memberships_list_fleets_with_roles(t: TestStore) {
    let zeta = fleet(&t, "zeta").await;
    let alpha = fleet(&t, "alpha").await;
    let mid = fleet(&t, "mid").await;
    let other = fleet(&t, "other").await;
    let m = member(&t, "m@example.com").await;
    let someone = member(&t, "someone@example.com").await;
    let loner = member(&t, "loner@example.com").await;

    t.store.add_fleet_member(zeta.id, m.id, Role::Member).await.unwrap();
    t.store.add_fleet_member(alpha.id, m.id, Role::Owner).await.unwrap();
    t.store.add_fleet_member(mid.id, m.id, Role::Admin).await.unwrap();
    t.store.add_fleet_member(other.id, someone.id, Role::Owner).await.unwrap();

    let got: HashMap<Uuid, (Fleet, Role)> =
        t.store.memberships(m.id).await.unwrap().into_iter().map(|fm| (fm.fleet.id, (fm.fleet, fm.role))).collect();
    let want: HashMap<Uuid, (Fleet, Role)> = [(zeta, Role::Member), (alpha.clone(), Role::Owner), (mid, Role::Admin)]
        .into_iter()
        .map(|(f, r)| (f.id, (f, r)))
        .collect();
    assert_eq!(got, want);

    // A second membership in the same fleet, with any role, is refused and changes nothing.
    assert_err!(t.store.add_fleet_member(alpha.id, m.id, Role::Member).await, StoreError::AlreadyExists(_));
    assert_err!(t.store.add_fleet_member(alpha.id, m.id, Role::Owner).await, StoreError::AlreadyExists(_));
    let roles: Vec<Role> = t
        .store
        .memberships(m.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|fm| fm.fleet.id == alpha.id)
        .map(|fm| fm.role)
        .collect();
    assert_eq!(roles, vec![Role::Owner]);

    let of_someone = t.store.memberships(someone.id).await.unwrap();
    assert_eq!(of_someone.len(), 1);
    assert_eq!((of_someone[0].fleet.id, of_someone[0].role), (other.id, Role::Owner));
    assert!(t.store.memberships(loner.id).await.unwrap().is_empty());
}

async fn machine_names_are_unique_per_fleet(t: TestStore) {
    let a = fleet(&t, "a").await;
    let b = fleet(&t, "b").await;
    let web_a = t.store.create_machine(a.id, "web-1").await.unwrap();
    let web_b = t.store.create_machine(b.id, "web-1").await.unwrap();
    assert_ne!(web_a.id, web_b.id);
    assert_eq!((web_a.fleet_id, web_a.name.as_str()), (a.id, "web-1"));
    assert_eq!((web_b.fleet_id, web_b.name.as_str()), (b.id, "web-1"));
    assert_eq!(web_a.created_at, t.clock.now());

    assert_err!(t.store.create_machine(a.id, "web-1").await, StoreError::AlreadyExists(_));
    assert_err!(t.store.create_machine(a.id, " web-1 ").await, StoreError::AlreadyExists(_));
    for bad in ["", "  ", "web\n1", "web\u{0}"] {
        assert_err!(
            t.store.create_machine(a.id, bad).await,
            StoreError::Invalid { field: "machine", .. },
            "for {bad:?}"
        );
    }

    let db_b = machine(&t, &b, "db").await;
    assert_eq!(t.store.machine_by_name(a.id, "web-1").await.unwrap(), web_a);
    assert_eq!(t.store.machine_by_name(b.id, "web-1").await.unwrap(), web_b);
    assert_eq!(t.store.machine_by_name(b.id, "db").await.unwrap(), db_b);
    assert_err!(t.store.machine_by_name(a.id, "db").await, StoreError::NotFound(_));
    assert_err!(t.store.machine_by_name(a.id, "web-2").await, StoreError::NotFound(_));
    assert_err!(t.store.machine_by_name(Uuid::now_v7(), "web-1").await, StoreError::NotFound(_));
}

async fn grant_machine_twice_already_exists(t: TestStore) {
    let a = fleet(&t, "a").await;
    let m1 = machine(&t, &a, "m1").await;
    let m2 = machine(&t, &a, "m2").await;
    let x = member(&t, "x@example.com").await;
    let y = member(&t, "y@example.com").await;
    t.store.add_fleet_member(a.id, x.id, Role::Member).await.unwrap();
    t.store.add_fleet_member(a.id, y.id, Role::Member).await.unwrap();

    t.store.grant_machine(m1.id, x.id).await.unwrap();
    assert_err!(t.store.grant_machine(m1.id, x.id).await, StoreError::AlreadyExists(_));
    // Other machine, other member: separate grants.
    t.store.grant_machine(m2.id, x.id).await.unwrap();
    t.store.grant_machine(m1.id, y.id).await.unwrap();
    assert_err!(t.store.grant_machine(m2.id, x.id).await, StoreError::AlreadyExists(_));

    // The refused duplicate did not disturb the grant: x still sees m1's sessions.
    let s1 = start(&t, &m1, &x).await;
    let seen = list_all(&t, &Viewer::Member(x.id), &SessionQuery::default()).await;
    assert_eq!(ids(&seen), vec![s1]);
}

// ------------------------------------------------------------------------------------------------------------
// credentials

async fn api_token_lookup_by_digest(t: TestStore) {
    let alice = member(&t, "alice@example.com").await;
    let bob = member(&t, "bob@example.com").await;
    let (token_a, digest_a) = secrets::new_token("cmdop");
    let (_, digest_b) = secrets::new_token("cmdop");
    let id_a = t.store.create_api_token(alice.id, "laptop", &digest_a).await.unwrap();
    let id_b = t.store.create_api_token(bob.id, "ci", &digest_b).await.unwrap();
    assert_ne!(id_a, id_b);

    assert_eq!(t.store.member_by_api_token(&digest_a).await.unwrap(), Some(alice.clone()));
    assert_eq!(t.store.member_by_api_token(&secrets::hash_token(&token_a)).await.unwrap(), Some(alice.clone()));
    assert_eq!(t.store.member_by_api_token(&digest_b).await.unwrap(), Some(bob));
    // Lookups are repeatable (recording the use does not spend the token).
    assert_eq!(t.store.member_by_api_token(&digest_a).await.unwrap(), Some(alice));

    let (_, unknown) = secrets::new_token("cmdop");
    let mut flipped = digest_a.clone();
    *flipped.last_mut().unwrap() ^= 1;
    for wrong in [unknown, flipped, digest_a[..31].to_vec(), Vec::new(), token_a.as_bytes().to_vec()] {
        assert_eq!(t.store.member_by_api_token(&wrong).await.unwrap(), None, "digest {wrong:?}");
    }
}

async fn login_session_expires_with_the_clock(t: TestStore) {
    let alice = member(&t, "alice@example.com").await;
    let bob = member(&t, "bob@example.com").await;
    let (_, da) = secrets::new_token("login");
    let (_, db) = secrets::new_token("login");
    let now = t.clock.now();
    t.store.create_login_session(alice.id, &da, now + Duration::hours(12)).await.unwrap();
    t.store.create_login_session(bob.id, &db, now + Duration::hours(24)).await.unwrap();

    assert_eq!(t.store.member_by_login_session(&da).await.unwrap(), Some(alice.clone()));
    assert_eq!(t.store.member_by_login_session(&db).await.unwrap(), Some(bob.clone()));
    let (_, unknown) = secrets::new_token("login");
    assert_eq!(t.store.member_by_login_session(&unknown).await.unwrap(), None);

    t.clock.advance(Duration::hours(12) - Duration::milliseconds(1));
    assert_eq!(t.store.member_by_login_session(&da).await.unwrap(), Some(alice), "1 ms before expiry");
    t.clock.advance(Duration::milliseconds(2));
    assert_eq!(t.store.member_by_login_session(&da).await.unwrap(), None, "1 ms after expiry");
    assert_eq!(t.store.member_by_login_session(&db).await.unwrap(), Some(bob.clone()), "bob's lasts longer");

    // A new login after the expiry does not bring the old one back, and works itself.
    let (_, dc) = secrets::new_token("login");
    t.store.create_login_session(bob.id, &dc, t.clock.now() + Duration::hours(1)).await.unwrap();
    assert_eq!(t.store.member_by_login_session(&da).await.unwrap(), None);
    assert_eq!(t.store.member_by_login_session(&dc).await.unwrap(), Some(bob.clone()));

    t.clock.advance(Duration::hours(13));
    assert_eq!(t.store.member_by_login_session(&db).await.unwrap(), None);
    assert_eq!(t.store.member_by_login_session(&dc).await.unwrap(), None);
}

async fn delete_login_session_ends_it(t: TestStore) {
    let alice = member(&t, "alice@example.com").await;
    let (_, laptop) = secrets::new_token("login");
    let (_, phone) = secrets::new_token("login");
    let expires = t.clock.now() + Duration::days(7);
    t.store.create_login_session(alice.id, &laptop, expires).await.unwrap();
    t.store.create_login_session(alice.id, &phone, expires).await.unwrap();
    assert_eq!(t.store.member_by_login_session(&laptop).await.unwrap(), Some(alice.clone()));

    t.store.delete_login_session(&laptop).await.unwrap();
    assert_eq!(t.store.member_by_login_session(&laptop).await.unwrap(), None);
    // Only that login ends.
    assert_eq!(t.store.member_by_login_session(&phone).await.unwrap(), Some(alice));
}

// ------------------------------------------------------------------------------------------------------------
// visibility

/// Fleet A with machines m1, m2; fleet B with m3; two sessions on each machine (one ended), each with output of
/// its own. Members in every relation to them.
struct Vis {
    t: TestStore,
    a: Fleet,
    b: Fleet,
    m1: Machine,
    m2: Machine,
    m3: Machine,
    owner_a: Member,
    admin_a: Member,
    /// Plain member of A with a grant on m1.
    granted_a: Member,
    /// Plain member of A without grants.
    plain_a: Member,
    /// Admin of B.
    admin_b: Member,
    /// Plain member of B with grants on m3 and on A's m1.
    member_b: Member,
    /// In no fleet.
    outsider: Member,
    /// In no fleet, but granted m1 and m2.
    grant_only: Member,
    on_m1: Vec<Uuid>,
    on_m2: Vec<Uuid>,
    on_m3: Vec<Uuid>,
    output: HashMap<Uuid, Vec<u8>>,
}

async fn vis_world(t: TestStore) -> Vis {
    let a = fleet(&t, "fleet-a").await;
    let b = fleet(&t, "fleet-b").await;
    let m1 = machine(&t, &a, "m1").await;
    let m2 = machine(&t, &a, "m2").await;
    let m3 = machine(&t, &b, "m3").await;

    let owner_a = member(&t, "owner-a@example.com").await;
    let admin_a = member(&t, "admin-a@example.com").await;
    let granted_a = member(&t, "granted-a@example.com").await;
    let plain_a = member(&t, "plain-a@example.com").await;
    let admin_b = member(&t, "admin-b@example.com").await;
    let member_b = member(&t, "member-b@example.com").await;
    let outsider = member(&t, "outsider@example.com").await;
    let grant_only = member(&t, "grant-only@example.com").await;

    let s = &t.store;
    s.add_fleet_member(a.id, owner_a.id, Role::Owner).await.unwrap();
    s.add_fleet_member(a.id, admin_a.id, Role::Admin).await.unwrap();
    s.add_fleet_member(a.id, granted_a.id, Role::Member).await.unwrap();
    s.add_fleet_member(a.id, plain_a.id, Role::Member).await.unwrap();
    s.add_fleet_member(b.id, admin_b.id, Role::Admin).await.unwrap();
    s.add_fleet_member(b.id, member_b.id, Role::Member).await.unwrap();
    s.grant_machine(m1.id, granted_a.id).await.unwrap();
    s.grant_machine(m3.id, member_b.id).await.unwrap();
    // Grants to people outside the machine's fleet. The store may also refuse them; either way they must not
    // make anything visible.
    let _ = s.grant_machine(m1.id, member_b.id).await;
    let _ = s.grant_machine(m1.id, grant_only.id).await;
    let _ = s.grant_machine(m2.id, grant_only.id).await;

    let mut output = HashMap::new();
    let mut sessions = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..2 {
        for (i, (m, by)) in [(&m1, &owner_a), (&m2, &admin_a), (&m3, &admin_b)].into_iter().enumerate() {
            let id = start(&t, m, by).await;
            let bytes = format!("output of {id} on {}\r\n", m.name).into_bytes();
            s.append_output(id, &[chunk(0, &bytes)]).await.unwrap();
            if round == 1 {
                s.end_session(id, exited(0)).await.unwrap();
            }
            output.insert(id, bytes);
            sessions[i].push(id);
            t.clock.advance(Duration::seconds(1));
        }
    }
    let [on_m1, on_m2, on_m3] = sessions;
    Vis {
        t,
        a,
        b,
        m1,
        m2,
        m3,
        owner_a,
        admin_a,
        granted_a,
        plain_a,
        admin_b,
        member_b,
        outsider,
        grant_only,
        on_m1,
        on_m2,
        on_m3,
        output,
    }
}

impl Vis {
    fn all(&self) -> Vec<Uuid> {
        [&self.on_m1, &self.on_m2, &self.on_m3].into_iter().flatten().copied().collect()
    }

    /// `viewer` lists exactly `expected`, can open each of them and read its transcript, and gets the very
    /// NotFound of a random id for every other session.
    async fn assert_sees(&self, viewer: &Viewer, expected: &[Uuid], who: &str) {
        let t = &self.t;
        let want: BTreeSet<Uuid> = expected.iter().copied().collect();

        let listed = list_all(t, viewer, &SessionQuery::default()).await;
        let listed_set: BTreeSet<Uuid> = listed.iter().map(|s| s.id).collect();
        assert_eq!(listed_set.len(), listed.len(), "{who}: a session is listed twice");
        assert_eq!(listed_set, want, "{who}: listed sessions");
        let one_by_one = list_all(t, viewer, &SessionQuery { limit: Some(1), ..Default::default() }).await;
        assert_eq!(ids(&one_by_one), ids(&listed), "{who}: listed one per page");

        let random = Uuid::now_v7();
        let missing = t.store.session(viewer, random).await.unwrap_err();
        assert!(matches!(missing, StoreError::NotFound(_)), "{who}: {missing:?}");
        let missing_tr = t.store.read_transcript(viewer, random, 0).await.unwrap_err();
        assert!(matches!(missing_tr, StoreError::NotFound(_)), "{who}: {missing_tr:?}");

        for id in self.all() {
            let detail = t.store.session(viewer, id).await;
            let transcript = t.store.read_transcript(viewer, id, 0).await;
            if want.contains(&id) {
                assert_eq!(detail.unwrap_or_else(|e| panic!("{who}: session {id}: {e}")).id, id);
                let tr = transcript.unwrap_or_else(|e| panic!("{who}: transcript {id}: {e}"));
                assert_eq!(tr.bytes, self.output[&id], "{who}: transcript of {id}");
            } else {
                match detail {
                    Err(e @ StoreError::NotFound(_)) => {
                        assert_eq!(e.to_string(), missing.to_string(), "{who}: session {id} is told apart")
                    }
                    other => panic!("{who}: session {id} should be NotFound, got {other:?}"),
                }
                match transcript {
                    Err(e @ StoreError::NotFound(_)) => {
                        assert_eq!(e.to_string(), missing_tr.to_string(), "{who}: transcript {id} is told apart")
                    }
                    other => panic!("{who}: transcript {id} should be NotFound, got {other:?}"),
                }
            }
        }
    }
}

fn concat(parts: &[&Vec<Uuid>]) -> Vec<Uuid> {
    parts.iter().flat_map(|v| v.iter().copied()).collect()
}

async fn visibility_owner_and_admin_see_their_whole_fleet(t: TestStore) {
    let w = vis_world(t).await;
    let fleet_a = concat(&[&w.on_m1, &w.on_m2]);
    w.assert_sees(&Viewer::Member(w.owner_a.id), &fleet_a, "owner of A").await;
    w.assert_sees(&Viewer::Member(w.admin_a.id), &fleet_a, "admin of A").await;
}

async fn visibility_member_sees_only_granted_machines(t: TestStore) {
    let w = vis_world(t).await;
    w.assert_sees(&Viewer::Member(w.granted_a.id), &w.on_m1, "member of A granted m1").await;

    // Granting m2 as well widens the view to m2.
    w.t.store.grant_machine(w.m2.id, w.granted_a.id).await.unwrap();
    w.assert_sees(&Viewer::Member(w.granted_a.id), &concat(&[&w.on_m1, &w.on_m2]), "granted m1 and m2").await;
}

async fn visibility_member_without_grant_sees_nothing(t: TestStore) {
    let w = vis_world(t).await;
    w.assert_sees(&Viewer::Member(w.plain_a.id), &[], "member of A without grants").await;
}

async fn visibility_member_of_no_fleet_sees_nothing(t: TestStore) {
    let w = vis_world(t).await;
    w.assert_sees(&Viewer::Member(w.outsider.id), &[], "member of no fleet").await;
    // An id that is no member at all.
    w.assert_sees(&Viewer::Member(Uuid::now_v7()), &[], "unknown member id").await;
}

async fn visibility_member_of_other_fleet_sees_only_that_fleet(t: TestStore) {
    let w = vis_world(t).await;
    w.assert_sees(&Viewer::Member(w.admin_b.id), &w.on_m3, "admin of B").await;
    // member_b is also granted A's m1, but is no member of A.
    w.assert_sees(&Viewer::Member(w.member_b.id), &w.on_m3, "member of B granted m3 (and m1 of A)").await;
}

async fn visibility_grant_without_membership_sees_nothing(t: TestStore) {
    let w = vis_world(t).await;
    w.assert_sees(&Viewer::Member(w.grant_only.id), &[], "granted m1, m2 without membership").await;
}

async fn visibility_share_sees_exactly_one_session(t: TestStore) {
    let w = vis_world(t).await;
    for id in w.all() {
        let share = Viewer::Share { session_id: id };
        w.assert_sees(&share, &[id], &format!("share of {id}")).await;
        // Filters that exclude the shared session leave nothing; ones that match it keep it.
        let in_other_fleet = if w.on_m3.contains(&id) { w.a.id } else { w.b.id };
        let q = SessionQuery { fleet_id: Some(in_other_fleet), ..Default::default() };
        assert!(list_all(&w.t, &share, &q).await.is_empty());
        let session = w.t.store.session(&share, id).await.unwrap();
        let q = SessionQuery { machine_id: Some(session.machine_id), ..Default::default() };
        assert_eq!(ids(&list_all(&w.t, &share, &q).await), vec![id]);
    }
    w.assert_sees(&Viewer::Share { session_id: Uuid::now_v7() }, &[], "share of a missing session").await;
}

async fn visibility_filters_cannot_widen_what_a_viewer_sees(t: TestStore) {
    let w = vis_world(t).await;
    let empty = |sessions: Vec<Session>| sessions.is_empty();
    let owner_a = Viewer::Member(w.owner_a.id);
    for q in [
        SessionQuery { fleet_id: Some(w.b.id), ..Default::default() },
        SessionQuery { machine_id: Some(w.m3.id), ..Default::default() },
        SessionQuery { user_id: Some(w.admin_b.id), ..Default::default() },
        SessionQuery { fleet_id: Some(w.b.id), machine_id: Some(w.m3.id), ..Default::default() },
    ] {
        assert!(empty(list_all(&w.t, &owner_a, &q).await), "owner of A with {q:?}");
    }
    let granted = Viewer::Member(w.granted_a.id);
    for q in [
        SessionQuery { machine_id: Some(w.m2.id), ..Default::default() },
        SessionQuery { fleet_id: Some(w.a.id), machine_id: Some(w.m2.id), ..Default::default() },
        SessionQuery { user_id: Some(w.admin_a.id), ..Default::default() },
    ] {
        assert!(empty(list_all(&w.t, &granted, &q).await), "member granted m1 with {q:?}");
    }
    let q = SessionQuery { machine_id: Some(w.m1.id), ..Default::default() };
    let got: BTreeSet<Uuid> = ids(&list_all(&w.t, &granted, &q).await).into_iter().collect();
    assert_eq!(got, w.on_m1.iter().copied().collect());
    // And a fleet filter on their own fleet keeps to the granted machine.
    let q = SessionQuery { fleet_id: Some(w.a.id), ..Default::default() };
    let got: BTreeSet<Uuid> = ids(&list_all(&w.t, &granted, &q).await).into_iter().collect();
    assert_eq!(got, w.on_m1.iter().copied().collect());
}

async fn visibility_filters_by_name_match_only_what_the_viewer_sees(t: TestStore) {
    let w = vis_world(t).await;
    // A machine named like one of fleet A's, in fleet B.
    let b_m1 = machine(&w.t, &w.b, "m1").await;
    let on_b_m1 = start(&w.t, &b_m1, &w.admin_b).await;
    let set = |v: &[Uuid]| v.iter().copied().collect::<BTreeSet<Uuid>>();
    let listed = |viewer: Viewer, q: SessionQuery| {
        let t = &w.t;
        async move { ids(&list_all(t, &viewer, &q).await).into_iter().collect::<BTreeSet<Uuid>>() }
    };
    let by_name = |fleet: Option<&str>, machine: Option<&str>, user: Option<&str>| SessionQuery {
        fleet: fleet.map(str::to_string),
        machine: machine.map(str::to_string),
        user: user.map(str::to_string),
        ..Default::default()
    };
    let owner_a = Viewer::Member(w.owner_a.id);
    let admin_b = Viewer::Member(w.admin_b.id);
    assert_eq!(listed(owner_a.clone(), by_name(None, Some("m1"), None)).await, set(&w.on_m1), "A's m1 only");
    assert_eq!(listed(admin_b.clone(), by_name(None, Some("m1"), None)).await, set(&[on_b_m1]), "B's m1 only");
    assert_eq!(
        listed(owner_a.clone(), by_name(Some("fleet-a"), None, None)).await,
        set(&concat(&[&w.on_m1, &w.on_m2]))
    );
    assert_eq!(listed(owner_a.clone(), by_name(Some("fleet-b"), None, None)).await, set(&[]), "not A's owner's fleet");
    assert_eq!(listed(owner_a.clone(), by_name(Some("fleet-b"), Some("m1"), None)).await, set(&[]));
    assert_eq!(listed(owner_a.clone(), by_name(None, None, Some("ADMIN-A@example.com"))).await, set(&w.on_m2));
    assert_eq!(
        listed(owner_a.clone(), by_name(Some("fleet-a"), Some("m2"), Some("admin-a@example.com"))).await,
        set(&w.on_m2)
    );
    assert_eq!(
        listed(owner_a.clone(), by_name(Some("fleet-a"), Some("m1"), Some("admin-a@example.com"))).await,
        set(&[])
    );
    assert_eq!(listed(owner_a.clone(), by_name(None, Some("no-such-machine"), None)).await, set(&[]));
    assert_eq!(
        listed(owner_a, by_name(None, None, Some("admin-b@example.com"))).await,
        set(&[]),
        "B's admin's sessions"
    );
    let granted = Viewer::Member(w.granted_a.id);
    assert_eq!(listed(granted.clone(), by_name(None, Some("m2"), None)).await, set(&[]), "m2 is not granted");
    assert_eq!(listed(granted, by_name(Some("fleet-a"), None, None)).await, set(&w.on_m1));
}

async fn visibility_counts_follow_filters_and_visibility(t: TestStore) {
    let w = vis_world(t).await;
    // Each (machine, starter) pair of the world has one active and one ended session.
    let counts = |viewer: Viewer, q: SessionQuery| {
        let t = &w.t;
        async move {
            let mut got: Vec<(String, String, SessionState, u64)> = t
                .store
                .session_counts(&viewer, &q)
                .await
                .unwrap()
                .into_iter()
                .map(|c| (c.machine, c.user, c.state, c.sessions))
                .collect();
            got.sort_by(|a, b| (&a.0, &a.1, a.2.as_str()).cmp(&(&b.0, &b.1, b.2.as_str())));
            got
        }
    };
    let row = |m: &str, u: &str, s: SessionState| (m.to_string(), u.to_string(), s, 1);
    let owner_a = Viewer::Member(w.owner_a.id);
    assert_eq!(
        counts(owner_a.clone(), SessionQuery::default()).await,
        vec![
            row("m1", "owner-a@example.com", SessionState::Active),
            row("m1", "owner-a@example.com", SessionState::Ended),
            row("m2", "admin-a@example.com", SessionState::Active),
            row("m2", "admin-a@example.com", SessionState::Ended),
        ]
    );
    // The state, limit and cursor do not narrow the counts; the other filters do.
    let q = SessionQuery {
        state: Some(SessionState::Active),
        limit: Some(1),
        machine: Some("m2".into()),
        ..Default::default()
    };
    assert_eq!(
        counts(owner_a.clone(), q).await,
        vec![
            row("m2", "admin-a@example.com", SessionState::Active),
            row("m2", "admin-a@example.com", SessionState::Ended)
        ]
    );
    let later = SessionQuery { since: Some(w.t.clock.now()), ..Default::default() };
    assert_eq!(counts(owner_a, later).await, vec![]);
    // A member granted m1 counts m1 only; another fleet's admin counts only that fleet.
    assert_eq!(
        counts(Viewer::Member(w.granted_a.id), SessionQuery::default()).await,
        vec![
            row("m1", "owner-a@example.com", SessionState::Active),
            row("m1", "owner-a@example.com", SessionState::Ended)
        ]
    );
    assert_eq!(counts(Viewer::Member(w.admin_b.id), SessionQuery::default()).await.len(), 2);
    assert_eq!(counts(Viewer::Member(w.outsider.id), SessionQuery::default()).await, vec![]);
    let backwards = SessionQuery { since: Some(w.t.clock.now()), until: Some(w.t.clock.now()), ..Default::default() };
    let e = w.t.store.session_counts(&Viewer::Member(w.owner_a.id), &backwards).await.unwrap_err();
    assert!(matches!(e, StoreError::Invalid { .. }), "{e:?}");
}

// ------------------------------------------------------------------------------------------------------------
// listing

async fn list_pages_in_started_at_then_id_order(t: TestStore) {
    let f = fleet(&t, "acme").await;
    let ma = machine(&t, &f, "a").await;
    let mb = machine(&t, &f, "b").await;
    let owner = owner_of(&t, "owner@example.com", &[&f]).await;
    let base = utc(2025, 6, 1, 12, 0, 0, 250);

    // 25 sessions over 11 distinct start times (so most times are shared by two or three sessions), created in
    // an order that is not the start order.
    let mut made = Vec::new();
    for i in 0..25i64 {
        let at = base + Duration::milliseconds(((i * 7) % 11) * 1000);
        let m = if i % 2 == 0 { &ma } else { &mb };
        made.push((at, start_at(&t, m, &owner, at).await));
    }
    let distinct: BTreeSet<_> = made.iter().map(|(at, _)| *at).collect();
    assert!(distinct.len() < made.len() && distinct.len() > 1);
    let started: HashMap<Uuid, DateTime<Utc>> = made.iter().map(|(at, id)| (*id, *at)).collect();
    let expected = newest_first(made);

    let viewer = Viewer::Member(owner.id);
    for limit in [7u32, 5, 1, 24, 25, 26] {
        let mut query = SessionQuery { limit: Some(limit), ..Default::default() };
        let mut got = Vec::new();
        loop {
            let page = t.store.list_sessions(&viewer, &query).await.unwrap();
            let remaining = expected.len() - got.len();
            assert_eq!(page.sessions.len(), remaining.min(limit as usize), "limit {limit}, after {}", got.len());
            for s in &page.sessions {
                assert_eq!(s.started_at, started[&s.id]);
            }
            got.extend(ids(&page.sessions));
            match page.next_cursor {
                Some(c) => {
                    assert!(got.len() < expected.len(), "limit {limit}: a cursor after the last session");
                    query.cursor = Some(c);
                }
                None => {
                    assert_eq!(got.len(), expected.len(), "limit {limit}: no cursor before the last session");
                    break;
                }
            }
        }
        assert_eq!(got, expected, "limit {limit}");
    }
}

async fn pagination_is_stable_when_sessions_arrive_between_pages(t: TestStore) {
    let f = fleet(&t, "acme").await;
    let m = machine(&t, &f, "m").await;
    let owner = owner_of(&t, "owner@example.com", &[&f]).await;
    let base = utc(2025, 6, 1, 12, 0, 0, 0);
    let mut made = Vec::new();
    for i in 0..10 {
        let at = base + Duration::minutes(i);
        made.push((at, start_at(&t, &m, &owner, at).await));
    }
    let expected = newest_first(made);
    let viewer = Viewer::Member(owner.id);

    let first = t.store.list_sessions(&viewer, &SessionQuery { limit: Some(4), ..Default::default() }).await.unwrap();
    assert_eq!(ids(&first.sessions), expected[..4]);

    // Newer sessions start, and an old one is imported, while the reader is on page 1.
    let mut newer = Vec::new();
    for i in 0..3 {
        newer.push(start_at(&t, &m, &owner, base + Duration::hours(1) + Duration::minutes(i)).await);
    }
    let older = start_at(&t, &m, &owner, base - Duration::hours(1)).await;

    let rest =
        list_all(&t, &viewer, &SessionQuery { limit: Some(4), cursor: first.next_cursor, ..Default::default() }).await;
    let mut want = expected[4..].to_vec();
    want.push(older);
    assert_eq!(ids(&rest), want);
    assert!(ids(&rest).iter().all(|id| !newer.contains(id)));
}

async fn garbage_cursor_is_invalid(t: TestStore) {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let f = fleet(&t, "acme").await;
    let m = machine(&t, &f, "m").await;
    let owner = owner_of(&t, "owner@example.com", &[&f]).await;
    start(&t, &m, &owner).await;
    let viewer = Viewer::Member(owner.id);
    let bad_cursors = [
        "garbage".to_string(),
        "!!!".to_string(),
        "not a cursor at all".to_string(),
        b64("not-a-cursor"),
        b64("123.not-a-uuid"),
        b64(&format!("soon.{}", Uuid::now_v7().simple())),
        // Well-formed, but the time is outside any representable range.
        Cursor { started_at_ms: i64::MAX, id: Uuid::now_v7() }.encode(),
    ];
    for cursor in bad_cursors {
        let q = SessionQuery { cursor: Some(cursor.clone()), ..Default::default() };
        assert_err!(
            t.store.list_sessions(&viewer, &q).await,
            StoreError::Invalid { field: "cursor", .. },
            "{cursor:?}"
        );
    }
}

/// What the filters test knows about each session.
struct Rec {
    id: Uuid,
    fleet_id: Uuid,
    machine_id: Uuid,
    user_id: Uuid,
    state: SessionState,
    started_at: DateTime<Utc>,
}

async fn list_filters_select_matching_sessions(t: TestStore) {
    let a = fleet(&t, "a").await;
    let b = fleet(&t, "b").await;
    let m1 = machine(&t, &a, "m1").await;
    let m2 = machine(&t, &a, "m2").await;
    let m3 = machine(&t, &b, "m3").await;
    let u1 = owner_of(&t, "u1@example.com", &[&a, &b]).await;
    let u2 = owner_of(&t, "u2@example.com", &[&a, &b]).await;
    let viewer = owner_of(&t, "viewer@example.com", &[&a, &b]).await;
    let base = utc(2025, 6, 1, 8, 0, 0, 500);
    let minute = |n: i64| base + Duration::minutes(n);

    // (machine, user, start minute, ended)
    let plan = [
        (&m1, &u1, 0, false),
        (&m1, &u2, 1, true),
        (&m2, &u1, 2, true),
        (&m3, &u2, 3, false),
        (&m3, &u1, 4, true),
        (&m2, &u2, 5, false),
        (&m1, &u1, 6, true),
        (&m3, &u2, 7, true),
        (&m2, &u1, 8, false),
        (&m1, &u2, 9, false),
        (&m3, &u1, 10, true),
        (&m2, &u2, 10, true),
    ];
    let mut recs = Vec::new();
    for (m, u, at, ended) in plan {
        let started_at = minute(at);
        let id = start_at(&t, m, u, started_at).await;
        if ended {
            let end = SessionEnd { ended_at: Some(started_at + Duration::seconds(30)), ..exited(0) };
            t.store.end_session(id, end).await.unwrap();
        }
        let state = if ended { SessionState::Ended } else { SessionState::Active };
        recs.push(Rec { id, fleet_id: m.fleet_id, machine_id: m.id, user_id: u.id, state, started_at });
    }

    let matches = |q: &SessionQuery, r: &Rec| {
        q.fleet_id.is_none_or(|f| r.fleet_id == f)
            && q.machine_id.is_none_or(|m| r.machine_id == m)
            && q.user_id.is_none_or(|u| r.user_id == u)
            && q.state.is_none_or(|s| r.state == s)
            && q.since.is_none_or(|s| r.started_at >= s)
            && q.until.is_none_or(|u| r.started_at < u)
    };
    let q = SessionQuery::default;
    let (active, ended) = (Some(SessionState::Active), Some(SessionState::Ended));
    let queries = [
        (q(), Some(12)),
        (SessionQuery { fleet_id: Some(a.id), ..q() }, Some(8)),
        (SessionQuery { fleet_id: Some(b.id), ..q() }, Some(4)),
        (SessionQuery { machine_id: Some(m1.id), ..q() }, Some(4)),
        (SessionQuery { machine_id: Some(m2.id), ..q() }, Some(4)),
        (SessionQuery { machine_id: Some(m3.id), ..q() }, Some(4)),
        (SessionQuery { user_id: Some(u1.id), ..q() }, Some(6)),
        (SessionQuery { user_id: Some(u2.id), ..q() }, Some(6)),
        (SessionQuery { user_id: Some(viewer.id), ..q() }, Some(0)),
        (SessionQuery { state: active, ..q() }, Some(5)),
        (SessionQuery { state: ended, ..q() }, Some(7)),
        // since is inclusive, until exclusive: exact start times on both edges.
        (SessionQuery { since: Some(minute(4)), ..q() }, Some(8)),
        (SessionQuery { until: Some(minute(4)), ..q() }, Some(4)),
        (SessionQuery { since: Some(minute(2)), until: Some(minute(7)), ..q() }, Some(5)),
        (SessionQuery { since: Some(minute(10)), ..q() }, Some(2)),
        (SessionQuery { until: Some(minute(10)), ..q() }, Some(10)),
        (SessionQuery { since: Some(minute(4) + Duration::milliseconds(1)), ..q() }, Some(7)),
        (SessionQuery { until: Some(minute(4) + Duration::milliseconds(1)), ..q() }, Some(5)),
        (SessionQuery { since: Some(minute(11)), ..q() }, Some(0)),
        (SessionQuery { until: Some(minute(0)), ..q() }, Some(0)),
        // combinations
        (SessionQuery { fleet_id: Some(a.id), user_id: Some(u2.id), ..q() }, None),
        (SessionQuery { fleet_id: Some(a.id), state: ended, ..q() }, None),
        (SessionQuery { machine_id: Some(m3.id), user_id: Some(u1.id), state: ended, ..q() }, None),
        (SessionQuery { fleet_id: Some(b.id), since: Some(minute(4)), until: Some(minute(10)), ..q() }, None),
        (
            SessionQuery { user_id: Some(u1.id), state: active, since: Some(minute(0)), until: Some(minute(9)), ..q() },
            None,
        ),
        (SessionQuery { fleet_id: Some(b.id), state: active, ..q() }, None),
        (SessionQuery { fleet_id: Some(a.id), machine_id: Some(m3.id), ..q() }, Some(0)),
        (
            SessionQuery {
                fleet_id: Some(a.id),
                machine_id: Some(m2.id),
                user_id: Some(u2.id),
                state: ended,
                since: Some(minute(5)),
                until: Some(minute(11)),
                ..q()
            },
            Some(1),
        ),
    ];
    let viewer = Viewer::Member(viewer.id);
    for (query, count) in queries {
        let expected = newest_first(recs.iter().filter(|r| matches(&query, r)).map(|r| (r.started_at, r.id)).collect());
        if let Some(count) = count {
            // Guards the plan above against edits that would make a query trivial.
            assert_eq!(expected.len(), count, "plan for {query:?}");
        }
        for limit in [None, Some(2)] {
            let q = SessionQuery { limit, ..query.clone() };
            assert_eq!(ids(&list_all(&t, &viewer, &q).await), expected, "{q:?}");
        }
    }
}

async fn list_since_must_be_before_until(t: TestStore) {
    let f = fleet(&t, "acme").await;
    let m = machine(&t, &f, "m").await;
    let owner = owner_of(&t, "owner@example.com", &[&f]).await;
    let at = utc(2025, 6, 1, 8, 0, 0, 0);
    start_at(&t, &m, &owner, at).await;
    let viewer = Viewer::Member(owner.id);
    for (since, until) in [(at, at), (at + Duration::minutes(5), at), (at + Duration::milliseconds(1), at)] {
        let q = SessionQuery { since: Some(since), until: Some(until), ..Default::default() };
        assert_err!(t.store.list_sessions(&viewer, &q).await, StoreError::Invalid { field: "until", .. }, "{q:?}");
    }
    let q = SessionQuery { since: Some(at), until: Some(at + Duration::milliseconds(1)), ..Default::default() };
    assert_eq!(t.store.list_sessions(&viewer, &q).await.unwrap().sessions.len(), 1);
}

async fn list_limit_is_clamped(t: TestStore) {
    let f = fleet(&t, "acme").await;
    let m = machine(&t, &f, "m").await;
    let owner = owner_of(&t, "owner@example.com", &[&f]).await;
    let base = utc(2025, 6, 1, 0, 0, 0, 0);
    let mut made = Vec::new();
    for i in 0..205 {
        let at = base + Duration::seconds(i);
        made.push((at, start_at(&t, &m, &owner, at).await));
    }
    let expected = newest_first(made);
    let viewer = Viewer::Member(owner.id);

    // A huge limit gives a page of at most 200, and the rest on the next.
    let page =
        t.store.list_sessions(&viewer, &SessionQuery { limit: Some(10_000), ..Default::default() }).await.unwrap();
    assert_eq!(page.sessions.len(), 200);
    assert_eq!(MAX_PAGE_SIZE, 200);
    assert_eq!(ids(&page.sessions), expected[..200]);
    let cursor = page.next_cursor.expect("more after 200");
    let q = SessionQuery { limit: Some(10_000), cursor: Some(cursor), ..Default::default() };
    let page = t.store.list_sessions(&viewer, &q).await.unwrap();
    assert_eq!(ids(&page.sessions), expected[200..]);
    assert_eq!(page.next_cursor, None);

    // u32::MAX too.
    let q = SessionQuery { limit: Some(u32::MAX), ..Default::default() };
    assert_eq!(t.store.list_sessions(&viewer, &q).await.unwrap().sessions.len(), 200);

    // No limit: the default page size.
    let page = t.store.list_sessions(&viewer, &SessionQuery::default()).await.unwrap();
    assert_eq!(page.sessions.len(), DEFAULT_PAGE_SIZE as usize);
    assert!(page.next_cursor.is_some());

    // Zero: one session per page, still in order.
    let mut q = SessionQuery { limit: Some(0), ..Default::default() };
    for want in &expected[..5] {
        let page = t.store.list_sessions(&viewer, &q).await.unwrap();
        assert_eq!(ids(&page.sessions), vec![*want]);
        q.cursor = Some(page.next_cursor.expect("more"));
    }
}

// ------------------------------------------------------------------------------------------------------------
// transcript

/// Every byte value, invalid UTF-8 of several kinds, terminal escapes and NULs, then pseudo-random bytes.
fn awkward_bytes(random_len: usize) -> Vec<u8> {
    let mut data: Vec<u8> = (0..=255u8).collect();
    data.extend((0..=255u8).rev());
    data.extend_from_slice(&[
        0xC3, 0x28, // bad continuation
        0xA0, 0xA1, // lone continuations
        0xE2, 0x28, 0xA1, // bad 3-byte sequence
        0xF0, 0x28, 0x8C, 0xBC, // bad 4-byte sequence
        0xC0, 0xAF, // overlong '/'
        0xED, 0xA0, 0x80, // UTF-16 surrogate
        0xF8, 0x88, 0x80, 0x80, 0x80, // 5-byte form
        0xFF, 0xFE, 0xFD, // never valid
        0xE2, 0x82, // truncated
    ]);
    data.extend_from_slice("\x1b[1;31mérreur ✗ 失败\x1b[0m\r\n".as_bytes());
    data.extend_from_slice(&[0, 0, 0, b'\r', b'\n', 0]);
    let mut x: u32 = 0x9E37_79B9;
    for _ in 0..random_len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.push((x >> 24) as u8);
    }
    assert!(std::str::from_utf8(&data).is_err());
    data
}

/// `data` cut into chunks of assorted sizes.
fn chunks_of(data: &[u8]) -> Vec<OutputChunk> {
    let sizes = [1usize, 2, 3, 5, 8, 13, 21, 64, 255, 256, 257, 700, 1024, 4096];
    let mut chunks = Vec::new();
    let mut off = 0;
    let mut i = 0;
    while off < data.len() {
        let n = sizes[i % sizes.len()].min(data.len() - off);
        chunks.push(OutputChunk { offset: off as u64, t_ms: i as u64 * 10, bytes: data[off..off + n].to_vec() });
        off += n;
        i += 1;
    }
    chunks
}

async fn transcript_binary_bytes_round_trip(t: TestStore) {
    let f = fleet(&t, "acme").await;
    let m = machine(&t, &f, "m").await;
    let owner = owner_of(&t, "owner@example.com", &[&f]).await;
    let viewer = Viewer::Member(owner.id);
    let one = start(&t, &m, &owner).await;
    let two = start(&t, &m, &owner).await;

    // Nothing yet.
    let empty = t.store.read_transcript(&viewer, one, 0).await.unwrap();
    assert_eq!((empty.start_offset, empty.bytes.len(), empty.total_bytes), (0, 0, 0));

    let mut data = awkward_bytes(20_000);
    let data_two: Vec<u8> = data.iter().rev().map(|b| b ^ 0x5A).collect();
    // One large chunk at the end.
    let big = awkward_bytes(300_000);
    let mut chunks = chunks_of(&data);
    chunks.push(OutputChunk { offset: data.len() as u64, t_ms: 99_999, bytes: big.clone() });
    data.extend_from_slice(&big);
    let chunks_two = chunks_of(&data_two);

    // Batches of 1 to 4 chunks, the two sessions interleaved.
    let (mut sent, mut sent_two, mut batch_no) = (0, 0, 0);
    while sent < chunks.len() {
        let n = (batch_no % 4 + 1).min(chunks.len() - sent);
        let batch = &chunks[sent..sent + n];
        let end = batch.last().map(|c| c.offset + c.bytes.len() as u64).unwrap();
        assert_eq!(t.store.append_output(one, batch).await.unwrap(), end);
        sent += n;
        batch_no += 1;
        if sent_two < chunks_two.len() {
            let c = &chunks_two[sent_two];
            let total = t.store.append_output(two, std::slice::from_ref(c)).await.unwrap();
            assert_eq!(total, c.offset + c.bytes.len() as u64);
            sent_two += 1;
        }
    }
    if sent_two < chunks_two.len() {
        assert_eq!(t.store.append_output(two, &chunks_two[sent_two..]).await.unwrap(), data_two.len() as u64);
    }

    let len = data.len() as u64;
    let info = transcript_info(&t, &viewer, one).await;
    assert_eq!((info.total_bytes, info.retained_bytes, info.truncated_bytes), (len, len, 0));
    assert!(info.gaps.is_empty());

    let full = t.store.read_transcript(&viewer, one, 0).await.unwrap();
    assert_eq!((full.start_offset, full.total_bytes), (0, len));
    assert!(full.gaps.is_empty());
    assert_eq!(full.bytes.len(), data.len());
    assert!(full.bytes == data, "bytes out differ from bytes in");

    let other = t.store.read_transcript(&viewer, two, 0).await.unwrap();
    assert_eq!(other.total_bytes, data_two.len() as u64);
    assert!(other.bytes == data_two, "the second session's bytes differ");

    // From every chunk boundary, one byte either side of it, and the end.
    let mut offsets = BTreeSet::new();
    for c in &chunks {
        offsets.extend([c.offset.saturating_sub(1), c.offset, c.offset + 1]);
    }
    offsets.extend([len - 1, len]);
    for off in offsets.into_iter().filter(|o| *o <= len) {
        let tr = t.store.read_transcript(&viewer, one, off).await.unwrap();
        assert_eq!((tr.start_offset, tr.total_bytes), (off, len), "from {off}");
        assert!(tr.bytes == data[off as usize..], "bytes from {off} (got {} bytes)", tr.bytes.len());
    }
}

async fn transcript_read_from_middle_offset(t: TestStore) {
    let f = fleet(&t, "acme").await;
    let m = machine(&t, &f, "m").await;
    let owner = owner_of(&t, "owner@example.com", &[&f]).await;
    let viewer = Viewer::Member(owner.id);
    let id = start(&t, &m, &owner).await;
    let parts: [&[u8]; 3] = [b"\x00\x01first chunk\xff", b"second\xc3\x28", b"third and last"];
    let mut all = Vec::new();
    for p in parts {
        t.store.append_output(id, &[chunk(all.len() as u64, p)]).await.unwrap();
        all.extend_from_slice(p);
    }
    // Inside the first chunk, inside the second, at the start of the third.
    for off in [5usize, parts[0].len() + 3, parts[0].len() + parts[1].len()] {
        let tr = t.store.read_transcript(&viewer, id, off as u64).await.unwrap();
        assert_eq!(tr.start_offset, off as u64);
        assert_eq!(tr.bytes, all[off..], "from {off}");
        assert_eq!(tr.total_bytes, all.len() as u64);
    }
    // Past the end: nothing, and the total.
    let tr = t.store.read_transcript(&viewer, id, all.len() as u64 + 10).await.unwrap();
    assert!(tr.bytes.is_empty());
    assert_eq!(tr.total_bytes, all.len() as u64);
}

async fn transcript_idempotent_resend_stores_nothing_twice(t: TestStore) {
    let f = fleet(&t, "acme").await;
    let m = machine(&t, &f, "m").await;
    let owner = owner_of(&t, "owner@example.com", &[&f]).await;
    let viewer = Viewer::Member(owner.id);
    let id = start(&t, &m, &owner).await;
    let (c0, c1, c2) = (chunk(0, b"hello "), chunk(6, b"world"), chunk(11, b"!\r\n"));

    assert_eq!(t.store.append_output(id, &[c0.clone(), c1.clone()]).await.unwrap(), 11);
    check_transcript(&t, &viewer, id, b"hello world").await;

    // Resends, alone and together, are accepted and change nothing.
    assert_eq!(t.store.append_output(id, std::slice::from_ref(&c0)).await.unwrap(), 11);
    assert_eq!(t.store.append_output(id, std::slice::from_ref(&c1)).await.unwrap(), 11);
    assert_eq!(t.store.append_output(id, &[c0.clone(), c1.clone()]).await.unwrap(), 11);
    assert_eq!(t.store.append_output(id, &[c1.clone(), c0.clone()]).await.unwrap(), 11);
    check_transcript(&t, &viewer, id, b"hello world").await;

    // A resend followed by new output: only the new output is added.
    assert_eq!(t.store.append_output(id, &[c0.clone(), c1.clone(), c2.clone()]).await.unwrap(), 14);
    check_transcript(&t, &viewer, id, b"hello world!\r\n").await;
    // The same chunk twice in one batch.
    let c3 = chunk(14, b"$ ");
    assert_eq!(t.store.append_output(id, &[c3.clone(), c3.clone()]).await.unwrap(), 16);
    assert_eq!(t.store.append_output(id, &[c2, c3]).await.unwrap(), 16);
    check_transcript(&t, &viewer, id, b"hello world!\r\n$ ").await;
    // An empty batch reports the total.
    assert_eq!(t.store.append_output(id, &[]).await.unwrap(), 16);
}

/// Another replica (a recorder that reconnected elsewhere while its old connection's write was in flight) commits
/// the same bytes while this store's write of them is under way. Whichever way they interleave, each byte is
/// stored once: this write waits and finds its bytes stored, or fails and its retry (as the recorder resends from
/// the last ack) does.
async fn transcript_write_racing_another_replica_stores_each_byte_once(t: TestStore) {
    let (viewer, id) = session_with_hello(&t).await;

    // The other replica stores the same bytes.
    let statements = [
        "INSERT INTO transcript_chunks (session_id, byte_offset, t_ms, bytes) VALUES ($1, 6, 18, $2)",
        "UPDATE sessions SET total_bytes = 11, retained_bytes = 11 WHERE id = $1",
    ];
    let store = t.store.clone();
    let ours = race_another_replica(&t, id, &statements, b"world", async move {
        store.append_output(id, &[chunk(6, b"world"), chunk(11, b"!")]).await
    })
    .await;
    if let Err(e) = ours {
        // Refused, not half-written: the resend settles it.
        eprintln!("the racing write was refused ({e}); resending");
        assert_eq!(t.store.append_output(id, &[chunk(6, b"world"), chunk(11, b"!")]).await.unwrap(), 12);
    }
    check_transcript(&t, &viewer, id, b"hello world!").await;
}

/// Another replica declares a gap at the offset this store's write of output begins at, while that write is under
/// way: the two rows do not collide (one a gap, the other a chunk), so only the update of the session's length can
/// tell. On PostgreSQL the write (one statement with no transaction, on where this store's last commit left the
/// session) fails as a whole, so its chunk must not stay, and its retry on what the database says finds the bytes
/// accounted for; on SQLite it waits for the write lock, then finds them so. Either way the transcript is the other
/// replica's.
async fn transcript_write_racing_another_replicas_gap_stores_none_of_its_rows(t: TestStore) {
    let (viewer, id) = session_with_hello(&t).await;

    let statements = [
        "INSERT INTO transcript_gaps (session_id, at_offset, bytes_lost, reason) VALUES ($1, 6, 5, 'recorder_offline')",
        "UPDATE sessions SET total_bytes = 11, lost_bytes = 5 WHERE id = $1",
    ];
    let store = t.store.clone();
    let ours =
        race_another_replica(
            &t,
            id,
            &statements,
            b"",
            async move { store.append_output(id, &[chunk(6, b"world")]).await },
        )
        .await;
    assert_eq!(ours.unwrap(), 11, "{:?}: the racing write", t.store.backend());
    let info = transcript_info(&t, &viewer, id).await;
    assert_eq!((info.total_bytes, info.retained_bytes), (11, 6));
    assert_eq!(info.gaps, [GapInfo { at_offset: 6, bytes_lost: 5, reason: GapReason::RecorderOffline }]);
    let tr = t.store.read_transcript(&viewer, id, 0).await.unwrap();
    assert_eq!((tr.bytes.as_slice(), tr.total_bytes), (&b"hello "[..], 11));
    // The session goes on from the end of the gap.
    assert_eq!(t.store.append_output(id, &[chunk(11, b"!")]).await.unwrap(), 12);
    assert_eq!(t.store.read_transcript(&viewer, id, 0).await.unwrap().bytes, b"hello !");
}

/// An owner's session with "hello " stored, for the racing tests.
async fn session_with_hello(t: &TestStore) -> (Viewer, Uuid) {
    let f = fleet(t, "acme").await;
    let m = machine(t, &f, "m").await;
    let owner = owner_of(t, "owner@example.com", &[&f]).await;
    let id = start(t, &m, &owner).await;
    assert_eq!(t.store.append_output(id, &[chunk(0, b"hello ")]).await.unwrap(), 6);
    (Viewer::Member(owner.id), id)
}

/// Another replica's transaction runs `statements` (each bound to the session `id`, and `bytes` where it takes `$2`)
/// and stays open, holding the session's row (PostgreSQL) or the write lock (SQLite), while `ours` starts; it
/// commits 300 ms later. Returns what `ours` gave.
async fn race_another_replica<T: Send + 'static>(
    t: &TestStore,
    id: Uuid,
    statements: &[&'static str],
    bytes: &'static [u8],
    ours: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    use sqlx::Connection;
    macro_rules! with_connection {
        ($conn:expr, $begin:expr) => {{
            let mut conn = $conn;
            sqlx::query($begin).execute(&mut conn).await.unwrap();
            for sql in statements {
                let query = sqlx::query(*sql).bind(id);
                let query = if sql.contains("$2") { query.bind(bytes) } else { query };
                query.execute(&mut conn).await.unwrap();
            }
            let ours = tokio::spawn(ours);
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
            ours.await.unwrap()
        }};
    }
    match t.store.backend() {
        Backend::Postgres => with_connection!(sqlx::PgConnection::connect(&t.url).await.unwrap(), "BEGIN"),
        Backend::Sqlite => with_connection!(
            sqlx::SqliteConnection::connect(&format!("sqlite://{}", t.url)).await.unwrap(),
            "BEGIN IMMEDIATE"
        ),
    }
}

/// The session's transcript is exactly `want`, and nothing more is counted as stored.
async fn check_transcript(t: &TestStore, viewer: &Viewer, id: Uuid, want: &[u8]) {
    let info = transcript_info(t, viewer, id).await;
    assert_eq!((info.total_bytes, info.retained_bytes), (want.len() as u64, want.len() as u64));
    let tr = t.store.read_transcript(viewer, id, 0).await.unwrap();
    assert_eq!(tr.bytes, want);
    assert_eq!(tr.total_bytes, want.len() as u64);
}

async fn transcript_resend_with_different_bytes_conflicts(t: TestStore) {
    let f = fleet(&t, "acme").await;
    let m = machine(&t, &f, "m").await;
    let owner = owner_of(&t, "owner@example.com", &[&f]).await;
    let viewer = Viewer::Member(owner.id);
    let id = start(&t, &m, &owner).await;
    assert_eq!(t.store.append_output(id, &[chunk(0, b"hello "), chunk(6, b"world")]).await.unwrap(), 11);

    for bad in [chunk(0, b"HELLO "), chunk(6, b"w0rld"), chunk(0, b"hellO ")] {
        assert_err!(t.store.append_output(id, std::slice::from_ref(&bad)).await, StoreError::Conflict(_), "{bad:?}");
    }
    // New output batched with a disagreeing resend: the whole batch is refused.
    let batch = [chunk(11, b"!"), chunk(0, b"jello ")];
    assert_err!(t.store.append_output(id, &batch).await, StoreError::Conflict(_));
    let batch = [chunk(0, b"jello "), chunk(11, b"!")];
    assert_err!(t.store.append_output(id, &batch).await, StoreError::Conflict(_));

    let info = transcript_info(&t, &viewer, id).await;
    assert_eq!((info.total_bytes, info.retained_bytes), (11, 11));
    assert_eq!(t.store.read_transcript(&viewer, id, 0).await.unwrap().bytes, b"hello world");

    // The session still takes its next output.
    assert_eq!(t.store.append_output(id, &[chunk(11, b"!")]).await.unwrap(), 12);
    assert_eq!(t.store.read_transcript(&viewer, id, 0).await.unwrap().bytes, b"hello world!");
}

async fn transcript_resend_off_chunk_boundary_with_different_bytes_conflicts(t: TestStore) {
    let f = fleet(&t, "acme").await;
    let m = machine(&t, &f, "m").await;
    let owner = owner_of(&t, "owner@example.com", &[&f]).await;
    let viewer = Viewer::Member(owner.id);
    let id = start(&t, &m, &owner).await;
    assert_eq!(t.store.append_output(id, &[chunk(0, b"hello "), chunk(6, b"world")]).await.unwrap(), 11);

    // Bytes 2..4 are "ll", bytes 4..8 are "o wo": these resends disagree with what is stored, so (Store trait
    // docs) they are a Conflict, wherever the stored chunks happen to begin.
    let mut accepted = Vec::new();
    for bad in [chunk(2, b"XX"), chunk(4, b"O_WO"), chunk(7, b"ORLD")] {
        match t.store.append_output(id, std::slice::from_ref(&bad)).await {
            Err(StoreError::Conflict(_)) => {}
            other => accepted.push(format!("{:?} at {} -> {other:?}", String::from_utf8_lossy(&bad.bytes), bad.offset)),
        }
    }
    assert!(accepted.is_empty(), "resends that disagree with \"hello world\" were not a Conflict: {accepted:?}");
    let info = transcript_info(&t, &viewer, id).await;
    assert_eq!((info.total_bytes, info.retained_bytes), (11, 11));
    assert_eq!(t.store.read_transcript(&viewer, id, 0).await.unwrap().bytes, b"hello world");
}

async fn transcript_hole_conflicts_and_stores_nothing(t: TestStore) {
    let f = fleet(&t, "acme").await;
    let m = machine(&t, &f, "m").await;
    let owner = owner_of(&t, "owner@example.com", &[&f]).await;
    let viewer = Viewer::Member(owner.id);
    let id = start(&t, &m, &owner).await;

    // A first chunk that does not start at 0.
    assert_err!(t.store.append_output(id, &[chunk(1, b"abc")]).await, StoreError::Conflict(_));
    assert_eq!(transcript_info(&t, &viewer, id).await.total_bytes, 0);

    assert_eq!(t.store.append_output(id, &[chunk(0, b"abc")]).await.unwrap(), 3);
    assert_err!(t.store.append_output(id, &[chunk(5, b"xyz")]).await, StoreError::Conflict(_));
    assert_err!(t.store.append_output(id, &[chunk(4, b"x")]).await, StoreError::Conflict(_));
    // Good output followed by a hole in one batch: nothing of it is stored.
    assert_err!(t.store.append_output(id, &[chunk(3, b"de"), chunk(10, b"zz")]).await, StoreError::Conflict(_));
    // Output overlapping the end with bytes that disagree with the stored ones.
    assert_err!(t.store.append_output(id, &[chunk(2, b"Xde")]).await, StoreError::Conflict(_));

    let info = transcript_info(&t, &viewer, id).await;
    assert_eq!((info.total_bytes, info.retained_bytes), (3, 3));
    assert!(info.gaps.is_empty());
    let tr = t.store.read_transcript(&viewer, id, 0).await.unwrap();
    assert_eq!((tr.bytes.as_slice(), tr.total_bytes), (&b"abc"[..], 3));

    assert_eq!(t.store.append_output(id, &[chunk(3, b"de")]).await.unwrap(), 5);
    assert_eq!(t.store.read_transcript(&viewer, id, 0).await.unwrap().bytes, b"abcde");
}

async fn append_to_unknown_session_is_not_found(t: TestStore) {
    assert_err!(t.store.append_output(Uuid::now_v7(), &[chunk(0, b"x")]).await, StoreError::NotFound(_));
    assert_err!(t.store.append_output(Uuid::now_v7(), &[]).await, StoreError::NotFound(_));
}

// ------------------------------------------------------------------------------------------------------------
// sessions

async fn session_detail_fields(t: TestStore) {
    let f = fleet(&t, "acme").await;
    let m = machine(&t, &f, "web-1").await;
    let alice = t
        .store
        .create_member(NewMember { display_name: "Alice".into(), ..new_member("Alice@Example.com") })
        .await
        .unwrap();
    t.store.add_fleet_member(f.id, alice.id, Role::Owner).await.unwrap();
    let id = t
        .store
        .create_session(NewSession { command: "top -d 1".into(), cols: 132, rows: 43, ..new_session(&m, &alice) })
        .await
        .unwrap();
    let viewer = Viewer::Member(alice.id);
    let s = t.store.session(&viewer, id).await.unwrap();
    assert_eq!(s.id, id);
    assert_eq!((s.fleet.as_str(), s.fleet_id), ("acme", f.id));
    assert_eq!((s.machine.as_str(), s.machine_id), ("web-1", m.id));
    assert_eq!((s.user.as_str(), s.user_id, s.user_name.as_str()), ("alice@example.com", alice.id, "Alice"));
    assert_eq!(s.command, "top -d 1");
    assert_eq!((s.cols, s.rows), (132, 43));
    assert_eq!(s.state, SessionState::Active);
    assert_eq!((s.end_reason, s.ended_at, s.exit_code), (None, None, None));
    assert_eq!(s.started_at, t.clock.now());
    assert_eq!(s.duration_ms, 0);
    assert!(s.clients.is_empty());
    assert_eq!(s.chat_thread, None);
    assert_eq!((s.transcript.total_bytes, s.transcript.retained_bytes, s.transcript.truncated_bytes), (0, 0, 0));
    assert!(s.transcript.gaps.is_empty());

    // The list shows the same session.
    let listed = list_all(&t, &viewer, &SessionQuery::default()).await;
    assert_eq!(listed, vec![s]);
}

async fn end_session_records_outcome_and_duration(t: TestStore) {
    let f = fleet(&t, "acme").await;
    let m = machine(&t, &f, "m").await;
    let owner = owner_of(&t, "owner@example.com", &[&f]).await;
    let viewer = Viewer::Member(owner.id);

    let t0 = t.clock.now();
    let id = start(&t, &m, &owner).await;
    t.clock.advance(Duration::milliseconds(90_500));
    t.store.end_session(id, exited(2)).await.unwrap();
    let s = t.store.session(&viewer, id).await.unwrap();
    assert_eq!(s.state, SessionState::Ended);
    assert_eq!(s.exit_code, Some(2));
    assert_eq!(s.end_reason, Some(EndReason::Exited));
    assert_eq!(s.started_at, t0);
    assert_eq!(s.ended_at, Some(t0 + Duration::milliseconds(90_500)));
    assert_eq!(s.duration_ms, 90_500);
    // An ended session's duration no longer moves with the clock.
    t.clock.advance(Duration::hours(3));
    assert_eq!(t.store.session(&viewer, id).await.unwrap().duration_ms, 90_500);

    // An explicit end time, no exit code, recorder lost.
    let started = t.clock.now() - Duration::minutes(10);
    let lost = start_at(&t, &m, &owner, started).await;
    let ended_at = started + Duration::milliseconds(4_321);
    let end =
        SessionEnd { exit_code: None, exit_signal: None, reason: EndReason::RecorderLost, ended_at: Some(ended_at) };
    t.store.end_session(lost, end).await.unwrap();
    let s = t.store.session(&viewer, lost).await.unwrap();
    assert_eq!((s.state, s.end_reason, s.exit_code), (SessionState::Ended, Some(EndReason::RecorderLost), None));
    assert_eq!(s.ended_at, Some(ended_at));
    assert_eq!(s.duration_ms, 4_321);

    // Killed by a signal: exit code as reported (none), still Exited.
    let killed = start(&t, &m, &owner).await;
    t.clock.advance(Duration::seconds(2));
    let end = SessionEnd { exit_code: None, exit_signal: Some(9), reason: EndReason::Exited, ended_at: None };
    t.store.end_session(killed, end).await.unwrap();
    let s = t.store.session(&viewer, killed).await.unwrap();
    assert_eq!((s.state, s.exit_code, s.duration_ms), (SessionState::Ended, None, 2_000));

    let ended = list_all(&t, &viewer, &SessionQuery { state: Some(SessionState::Ended), ..Default::default() }).await;
    assert_eq!(ended.len(), 3);
}

async fn active_session_duration_grows_with_the_clock(t: TestStore) {
    let f = fleet(&t, "acme").await;
    let m = machine(&t, &f, "m").await;
    let owner = owner_of(&t, "owner@example.com", &[&f]).await;
    let viewer = Viewer::Member(owner.id);
    let id = start(&t, &m, &owner).await;
    let earlier = start_at(&t, &m, &owner, t.clock.now() - Duration::seconds(10)).await;

    assert_eq!(t.store.session(&viewer, id).await.unwrap().duration_ms, 0);
    assert_eq!(t.store.session(&viewer, earlier).await.unwrap().duration_ms, 10_000);
    t.clock.advance(Duration::milliseconds(1_234));
    assert_eq!(t.store.session(&viewer, id).await.unwrap().duration_ms, 1_234);
    t.clock.advance(Duration::seconds(60));
    let s = t.store.session(&viewer, id).await.unwrap();
    assert_eq!((s.state, s.ended_at, s.duration_ms), (SessionState::Active, None, 61_234));
    let listed = list_all(&t, &viewer, &SessionQuery::default()).await;
    let durations: HashMap<Uuid, u64> = listed.iter().map(|s| (s.id, s.duration_ms)).collect();
    assert_eq!(durations[&id], 61_234);
    assert_eq!(durations[&earlier], 71_234);
}

async fn end_session_twice_conflicts(t: TestStore) {
    let f = fleet(&t, "acme").await;
    let m = machine(&t, &f, "m").await;
    let owner = owner_of(&t, "owner@example.com", &[&f]).await;
    let viewer = Viewer::Member(owner.id);
    let id = start(&t, &m, &owner).await;
    t.clock.advance(Duration::seconds(5));
    t.store.end_session(id, exited(0)).await.unwrap();
    let first = t.store.session(&viewer, id).await.unwrap();

    t.clock.advance(Duration::seconds(5));
    assert_err!(t.store.end_session(id, exited(1)).await, StoreError::Conflict(_));
    let lost = SessionEnd { exit_code: None, exit_signal: None, reason: EndReason::RecorderLost, ended_at: None };
    assert_err!(t.store.end_session(id, lost).await, StoreError::Conflict(_));
    // The first end stands.
    let after = t.store.session(&viewer, id).await.unwrap();
    assert_eq!(after, first);
    assert_eq!((after.exit_code, after.end_reason, after.duration_ms), (Some(0), Some(EndReason::Exited), 5_000));

    assert_err!(t.store.end_session(Uuid::now_v7(), exited(0)).await, StoreError::NotFound(_));
}

async fn end_session_detaches_attached_clients(t: TestStore) {
    let f = fleet(&t, "acme").await;
    let m = machine(&t, &f, "m").await;
    let owner = owner_of(&t, "owner@example.com", &[&f]).await;
    let viewer = Viewer::Member(owner.id);
    let id = start(&t, &m, &owner).await;
    let other = start(&t, &m, &owner).await;

    let desktop = NewClient { kind: ClientKind::Desktop, name: "laptop".into(), member_id: Some(owner.id) };
    let c1 = t.store.attach_client(id, desktop.clone()).await.unwrap();
    t.clock.advance(Duration::seconds(1));
    let c2 = t
        .store
        .attach_client(id, NewClient { kind: ClientKind::Cli, name: "cmdop attach".into(), member_id: None })
        .await
        .unwrap();
    let c_other = t.store.attach_client(other, desktop).await.unwrap();
    t.clock.advance(Duration::seconds(1));
    let detached_c1 = t.clock.now();
    t.store.detach_client(id, c1, None).await.unwrap();
    t.clock.advance(Duration::seconds(5));
    let ended_at = t.clock.now();
    t.store.end_session(id, exited(0)).await.unwrap();

    let s = t.store.session(&viewer, id).await.unwrap();
    let by_id: HashMap<Uuid, _> = s.clients.iter().map(|c| (c.id, c)).collect();
    assert_eq!(by_id.len(), 2);
    assert_eq!(by_id[&c1].detached_at, Some(detached_c1), "an earlier detach stays as it was");
    assert_eq!(by_id[&c2].detached_at, Some(ended_at));
    assert_eq!(s.ended_at, Some(ended_at));

    // Clients of other sessions stay attached.
    let o = t.store.session(&viewer, other).await.unwrap();
    assert_eq!(o.clients.len(), 1);
    assert_eq!((o.clients[0].id, o.clients[0].detached_at), (c_other, None));
}

async fn clients_attach_and_detach(t: TestStore) {
    let f = fleet(&t, "acme").await;
    let m = machine(&t, &f, "m").await;
    let owner = owner_of(&t, "owner@example.com", &[&f]).await;
    let viewer = Viewer::Member(owner.id);
    let id = start(&t, &m, &owner).await;
    let other = start(&t, &m, &owner).await;

    let mut attached = Vec::new();
    for (kind, name) in [
        (ClientKind::Desktop, "alice's laptop"),
        (ClientKind::Cli, "cmdop attach"),
        (ClientKind::Bot, "deploy-bot"),
        (ClientKind::Browser, "Firefox"),
    ] {
        let member_id = (kind == ClientKind::Desktop).then_some(owner.id);
        let cid = t.store.attach_client(id, NewClient { kind, name: name.into(), member_id }).await.unwrap();
        attached.push((cid, kind, name, t.clock.now()));
        t.clock.advance(Duration::milliseconds(1_500));
    }
    let ids_: BTreeSet<Uuid> = attached.iter().map(|a| a.0).collect();
    assert_eq!(ids_.len(), 4, "client ids are distinct");

    let s = t.store.session(&viewer, id).await.unwrap();
    assert_eq!(s.clients.len(), 4);
    for (cid, kind, name, at) in &attached {
        let c = s.clients.iter().find(|c| c.id == *cid).expect("attached client listed");
        assert_eq!((c.kind, c.name.as_str(), c.attached_at, c.detached_at), (*kind, *name, *at, None));
    }
    assert!(t.store.session(&viewer, other).await.unwrap().clients.is_empty());

    // Detach the bot.
    let bot = attached[2].0;
    let detached_at = t.clock.now();
    t.store.detach_client(id, bot, None).await.unwrap();
    let s = t.store.session(&viewer, id).await.unwrap();
    for c in &s.clients {
        let want = if c.id == bot { Some(detached_at) } else { None };
        assert_eq!(c.detached_at, want, "client {}", c.name);
    }
    let listed = list_all(&t, &viewer, &SessionQuery::default()).await;
    assert_eq!(listed.iter().find(|l| l.id == id).unwrap().clients, s.clients);

    // Unknown clients, and clients of another session, are not found; nothing changes.
    assert_err!(t.store.detach_client(id, Uuid::now_v7(), None).await, StoreError::NotFound(_));
    assert_err!(t.store.detach_client(other, attached[0].0, None).await, StoreError::NotFound(_));
    assert_err!(t.store.detach_client(Uuid::now_v7(), attached[0].0, None).await, StoreError::NotFound(_));
    assert_eq!(t.store.session(&viewer, id).await.unwrap().clients, s.clients);

    let c = NewClient { kind: ClientKind::Cli, name: "cli".into(), member_id: None };
    assert_err!(t.store.attach_client(Uuid::now_v7(), c).await, StoreError::NotFound(_));
}

async fn create_session_rejects_bad_input(t: TestStore) {
    let a = fleet(&t, "a").await;
    let b = fleet(&t, "b").await;
    let ma = machine(&t, &a, "ma").await;
    let mb = machine(&t, &b, "mb").await;
    let owner = owner_of(&t, "owner@example.com", &[&a, &b]).await;

    let cross = NewSession { fleet_id: a.id, ..new_session(&mb, &owner) };
    assert_err!(t.store.create_session(cross).await, StoreError::Invalid { .. });
    let cross = NewSession { fleet_id: b.id, ..new_session(&ma, &owner) };
    assert_err!(t.store.create_session(cross).await, StoreError::Invalid { .. });
    for (cols, rows) in [(0, 24), (80, 0), (0, 0)] {
        let bad = NewSession { cols, rows, ..new_session(&ma, &owner) };
        assert_err!(t.store.create_session(bad).await, StoreError::Invalid { .. }, "{cols}x{rows}");
    }
    let unknown_machine = NewSession { machine_id: Uuid::now_v7(), ..new_session(&ma, &owner) };
    assert!(t.store.create_session(unknown_machine).await.is_err());

    assert!(list_all(&t, &Viewer::Member(owner.id), &SessionQuery::default()).await.is_empty(), "something was stored");
    // The largest terminal is fine.
    let big = NewSession { cols: u16::MAX, rows: u16::MAX, ..new_session(&ma, &owner) };
    let id = t.store.create_session(big).await.unwrap();
    let s = t.store.session(&Viewer::Member(owner.id), id).await.unwrap();
    assert_eq!((s.cols, s.rows), (u16::MAX, u16::MAX));
}

// ------------------------------------------------------------------------------------------------------------
// timestamps

async fn timestamps_round_trip_at_millisecond_precision(t: TestStore) {
    let now = utc(2026, 3, 4, 5, 6, 7, 891);
    t.clock.set(now);
    let f = fleet(&t, "acme").await;
    let m = machine(&t, &f, "m").await;
    let owner = owner_of(&t, "owner@example.com", &[&f]).await;
    assert_eq!((f.created_at, m.created_at, owner.created_at), (now, now, now));
    assert_eq!(t.store.fleet_by_name("acme").await.unwrap().created_at, now);
    assert_eq!(t.store.member_by_id(owner.id).await.unwrap().created_at, now);
    assert_eq!(t.store.machine_by_name(f.id, "m").await.unwrap().created_at, now);
    let viewer = Viewer::Member(owner.id);

    let started = utc(2025, 7, 14, 13, 45, 12, 345);
    let ended = utc(2025, 7, 14, 14, 0, 0, 1);
    let id = start_at(&t, &m, &owner, started).await;
    let client = t
        .store
        .attach_client(id, NewClient { kind: ClientKind::Cli, name: "cli".into(), member_id: None })
        .await
        .unwrap();
    t.store.end_session(id, SessionEnd { ended_at: Some(ended), ..exited(0) }).await.unwrap();
    let s = t.store.session(&viewer, id).await.unwrap();
    assert_eq!(s.started_at, started);
    assert_eq!(s.ended_at, Some(ended));
    assert_eq!(s.duration_ms, (ended - started).num_milliseconds() as u64);
    assert_eq!(s.clients.len(), 1);
    assert_eq!((s.clients[0].id, s.clients[0].attached_at), (client, now));

    // Neighbours 1 ms apart order and paginate exactly, also before 1970 and far ahead.
    let mut made = vec![(started, id)];
    for at in [
        started + Duration::milliseconds(1),
        started - Duration::milliseconds(1),
        started + Duration::milliseconds(2),
        utc(1969, 12, 31, 23, 59, 59, 999),
        utc(2999, 12, 31, 23, 59, 59, 999),
    ] {
        made.push((at, start_at(&t, &m, &owner, at).await));
    }
    let expected = newest_first(made.clone());
    let listed = list_all(&t, &viewer, &SessionQuery { limit: Some(1), ..Default::default() }).await;
    assert_eq!(ids(&listed), expected);
    let started_of: HashMap<Uuid, DateTime<Utc>> = made.iter().map(|(at, id)| (*id, *at)).collect();
    for s in &listed {
        assert_eq!(s.started_at, started_of[&s.id], "started_at of {}", s.id);
    }

    // Below a millisecond, both backends keep the same, truncated, value.
    let sub_ms = started + Duration::microseconds(678);
    let id = start_at(&t, &m, &owner, sub_ms).await;
    assert_eq!(t.store.session(&viewer, id).await.unwrap().started_at, started);
}

async fn time_filters_compare_sub_millisecond_bounds_exactly(t: TestStore) {
    let f = fleet(&t, "acme").await;
    let m = machine(&t, &f, "m").await;
    let owner = owner_of(&t, "owner@example.com", &[&f]).await;
    let viewer = Viewer::Member(owner.id);
    let started = utc(2025, 7, 14, 13, 45, 12, 345);
    let id = start_at(&t, &m, &owner, started).await;
    let half_ms_later = started + Duration::microseconds(500);

    // The session started before `since` (not "at or after" it), and before `until`.
    let since = SessionQuery { since: Some(half_ms_later), ..Default::default() };
    let until = SessionQuery { until: Some(half_ms_later), ..Default::default() };
    let got = (ids(&list_all(&t, &viewer, &since).await), ids(&list_all(&t, &viewer, &until).await));
    assert_eq!(got, (vec![], vec![id]), "(since, until) = {half_ms_later:?} for a session started at {started:?}");
}
