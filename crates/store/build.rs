// sqlx::migrate! and include_str! embed the migrations at compile time; rebuild when any changes.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
