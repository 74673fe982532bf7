//! The WIT interfaces an embedding application gives its plugins, by name, and the
//! grants that let a child import them.
//!
//! ```text
//!   acme:shop/inventory          an interface (a plugin imports it as the WIT names
//!   acme:shop/inventory@0.1.0    it, with its package's version when it has one)
//!   acme:shop/*                  a grant of every interface of a package
//! ```
//!
//! A grant without a version covers every version; `wasi:` and `warden:` interfaces
//! are the host's own, never an application's.

/// Whether an interface a component imports is an application's (not WASI's nor
/// Warden's own).
pub fn is_application_interface(import: &str) -> bool {
    !(import.starts_with("wasi:") || import.starts_with("warden:"))
}

/// Checks an interface name, `namespace:package/interface[@version]`, as an
/// application registers it.
///
/// # Errors
/// What is wrong with it, in a sentence.
pub fn check_interface_name(name: &str) -> Result<(), String> {
    let (unversioned, version) = match name.split_once('@') {
        Some((unversioned, version)) => (unversioned, Some(version)),
        None => (name, None),
    };
    let bad = |why: &str| {
        Err(format!(
            "{name:?} is not a WIT interface name ({why}): use namespace:package/interface[@version]"
        ))
    };
    let Some((package, interface)) = unversioned.split_once('/') else {
        return bad("no '/'");
    };
    let Some((namespace, package)) = package.split_once(':') else {
        return bad("no ':' between namespace and package");
    };
    for part in [namespace, package, interface] {
        if !is_identifier(part) {
            return bad("a part is not a kebab-case identifier");
        }
    }
    if !is_application_interface(name) {
        return bad("wasi: and warden: interfaces are the host's own");
    }
    match version {
        Some(v)
            if v.is_empty()
                || !v.chars().all(|c| c.is_ascii_alphanumeric() || ".+-".contains(c)) =>
        {
            bad("a bad version")
        }
        _ => Ok(()),
    }
}

/// Checks a grant: an interface name, or `namespace:package/*`.
///
/// # Errors
/// What is wrong with it, in a sentence.
pub fn check_interface_grant(grant: &str) -> Result<(), String> {
    match grant.strip_suffix("/*") {
        Some(package) => check_interface_name(&format!("{package}/any")),
        None => check_interface_name(grant),
    }
    .map_err(|_| {
        format!(
            "{grant:?} is not an interface grant: use namespace:package/interface[@version] \
             or namespace:package/*"
        )
    })
}

/// Whether `grant` lets a child import `import`.
pub fn grant_covers(grant: &str, import: &str) -> bool {
    let unversioned = import.split_once('@').map_or(import, |(name, _)| name);
    match grant.strip_suffix("/*") {
        Some(package) => {
            unversioned.strip_prefix(package).is_some_and(|rest| rest.starts_with('/'))
        }
        None => grant == import || grant == unversioned,
    }
}

/// A WIT identifier: kebab-case words of lowercase letters and digits, each
/// starting with a letter.
fn is_identifier(part: &str) -> bool {
    !part.is_empty()
        && part.split('-').all(|word| {
            word.starts_with(|c: char| c.is_ascii_lowercase())
                && word.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_namespace_package_interface_and_version() {
        for good in ["acme:shop/inventory", "acme:shop/inventory@0.1.0", "my-co:app2/event-log"] {
            assert_eq!(check_interface_name(good), Ok(()), "{good}");
        }
        for bad in [
            "inventory",
            "acme/inventory",
            "acme:shop/Inventory",
            "acme:shop/inventory@",
            "acme:shop/-x",
            "wasi:cli/environment",
            "warden:plugin/runtime",
        ] {
            assert!(check_interface_name(bad).is_err(), "{bad}");
        }
        assert_eq!(check_interface_grant("acme:shop/*"), Ok(()));
        assert!(check_interface_grant("acme:*").unwrap_err().contains("\"acme:*\""));
    }

    #[test]
    fn a_grant_covers_its_interface_in_every_version_or_its_whole_package() {
        assert!(grant_covers("acme:shop/inventory", "acme:shop/inventory"));
        assert!(grant_covers("acme:shop/inventory", "acme:shop/inventory@0.1.0"));
        assert!(grant_covers("acme:shop/inventory@0.1.0", "acme:shop/inventory@0.1.0"));
        assert!(!grant_covers("acme:shop/inventory@0.2.0", "acme:shop/inventory@0.1.0"));
        assert!(!grant_covers("acme:shop/inventory", "acme:shop/inventory-admin"));
        assert!(grant_covers("acme:shop/*", "acme:shop/orders@1.0.0"));
        assert!(!grant_covers("acme:shop/*", "acme:shopping/orders"));
        assert!(!grant_covers("acme:shop/*", "acme:other/orders"));
    }
}
