//! The page templates (minijinja), compiled into the binary.

use minijinja::Environment;

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../templates/layout.html")),
    ("signin.html", include_str!("../templates/signin.html")),
    ("error.html", include_str!("../templates/error.html")),
    (
        "key_managers.html",
        include_str!("../templates/key_managers.html"),
    ),
    (
        "key_manager_new.html",
        include_str!("../templates/key_manager_new.html"),
    ),
    (
        "key_manager_review.html",
        include_str!("../templates/key_manager_review.html"),
    ),
    (
        "key_manager_edit.html",
        include_str!("../templates/key_manager_edit.html"),
    ),
    ("apis.html", include_str!("../templates/apis.html")),
    ("api_form.html", include_str!("../templates/api_form.html")),
    ("tiers.html", include_str!("../templates/tiers.html")),
    ("audit.html", include_str!("../templates/audit.html")),
    (
        "applications.html",
        include_str!("../templates/applications.html"),
    ),
    (
        "application_new.html",
        include_str!("../templates/application_new.html"),
    ),
    (
        "application.html",
        include_str!("../templates/application.html"),
    ),
    (
        "subscribe.html",
        include_str!("../templates/subscribe.html"),
    ),
    (
        "instructions.html",
        include_str!("../templates/instructions.html"),
    ),
    ("preview.html", include_str!("../templates/preview.html")),
];

pub fn templates() -> Result<Environment<'static>, String> {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .map_err(|err| format!("template {name}: {err}"))?;
    }
    Ok(env)
}
