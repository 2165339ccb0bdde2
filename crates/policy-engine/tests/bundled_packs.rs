#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every bundled pack in `policy-packs/` loads, and its `tests/*.yaml` cases pass.

use std::path::{Path, PathBuf};

fn packs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policy-packs");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn bundled_packs_validate() {
    let names: Vec<String> = packs()
        .iter()
        .map(|p| {
            policy_engine::validate_file(p)
                .unwrap_or_else(|e| panic!("{e}"))
                .name
        })
        .collect();
    assert_eq!(
        names,
        [
            "autogen-default",
            "multi-agent",
            "observe-only",
            "quickstart",
            "strict"
        ]
    );
}

#[test]
fn bundled_pack_cases_pass() {
    let mut failed = Vec::new();
    for p in packs() {
        let report = policy_engine::testing::run_pack_tests(&p);
        if !report.success() {
            failed.push(report.to_string());
        }
    }
    assert!(failed.is_empty(), "\n{}", failed.join("\n\n"));
}

#[test]
fn reports_failures_precisely() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pack.yaml"),
        "pack: {name: t}\nrules:\n  - {name: r, condition: {content_matches: boom}, decision: BLOCK}\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    std::fs::write(
        dir.path().join("tests/a.yaml"),
        "cases:\n  - name: passes\n    messages: [{role: user, content: boom}]\n    expect: {decision: BLOCK, deciding: r}\n  - name: fails\n    messages: [{role: user, content: calm}]\n    expect: {decision: BLOCK, triggered: [r]}\n",
    )
    .unwrap();
    let report = policy_engine::testing::run_pack_tests(dir.path());
    assert!(!report.success());
    let file = dir.path().join("tests/a.yaml").display().to_string();
    assert_eq!(
        report.to_string(),
        format!(
            "ok   {file}: passes\nFAIL {file}: case `fails`: expected decision BLOCK, got ALLOW; verdicts: \nFAIL {file}: case `fails`: expected `r` to trigger, it did not; verdicts: \n1 passed, 1 failed"
        )
    );
}
