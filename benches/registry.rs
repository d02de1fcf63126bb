//! The uid → connections registry on the direct-message path: looking up a uid among 100,000
//! bound ones (hit and miss), and binding plus unbinding one connection.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use wspush::registry::Registry;
use wspush::ConnId;

const UIDS: u32 = 100_000;

fn populated() -> (Registry, Vec<String>) {
    let mut registry = Registry::default();
    let uids: Vec<String> = (0..UIDS).map(|i| format!("user-{i}")).collect();
    for (i, uid) in uids.iter().enumerate() {
        registry.bind(uid, ConnId::new(i as u32, 1));
    }
    (registry, uids)
}

fn lookup(c: &mut Criterion) {
    let (registry, uids) = populated();
    let mut group = c.benchmark_group("registry_100k");
    let mut i = 0usize;
    group.bench_function("lookup_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % uids.len();
            black_box(registry.conns(black_box(&uids[i])).len())
        })
    });
    group.bench_function("lookup_miss", |b| {
        b.iter(|| black_box(registry.conns(black_box("nobody-here")).len()))
    });
    let mut registry = registry;
    group.bench_function("bind_then_unbind", |b| {
        b.iter(|| {
            let id = ConnId::new(UIDS + 1, 1);
            registry.bind(black_box("user-42"), id);
            registry.unbind("user-42", id);
        })
    });
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
