// `sqlx::migrate!` embeds the migration folders; without this, adding a new
// migration file would not rebuild the binary that must apply it.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
