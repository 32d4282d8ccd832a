//! mount(8)'s argument form (`-o` options from fstab) turned into
//! `ocxfs mount` arguments.

/// Mount options that `mount(8)` and fstab pass along but that mean
/// nothing to ocxfs (or are always true of it, like `ro`).
const GENERIC_MOUNT_OPTIONS: &[&str] = &[
    "defaults",
    "rw",
    "ro",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "nofail",
    "_netdev",
    "exec",
    "noexec",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "atime",
    "noatime",
    "relatime",
    "strictatime",
    "sync",
    "async",
];

/// `mount.fuse.ocxfs SOURCE MOUNTPOINT [-o opt[,opt=value]…]`, as `mount -t
/// fuse.ocxfs` and fstab run it, turned into `ocxfs mount` arguments: each
/// `-o name=value` is `--name value` (underscores for dashes), a bare
/// `-o flag` is `--flag`.
pub fn helper_args(args: &[String]) -> Result<Vec<String>, String> {
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" => options.extend(
                it.next()
                    .ok_or("-o needs options")?
                    .split(',')
                    .map(str::to_owned),
            ),
            o if o.starts_with("-o") => options.extend(o[2..].split(',').map(str::to_owned)),
            // mount(8) may pass these: no mtab writing, sloppy, verbose.
            "-n" | "-s" | "-v" => {}
            o if o.starts_with('-') => return Err(format!("unknown argument {o}")),
            p => positional.push(p.to_owned()),
        }
    }
    let [_source, mountpoint] = positional.as_slice() else {
        return Err("usage: mount.fuse.ocxfs SOURCE MOUNTPOINT [-o options]".into());
    };
    let mut out = vec!["ocxfs".to_owned(), "mount".to_owned(), mountpoint.clone()];
    for o in options.iter().filter(|o| !o.is_empty()) {
        let (name, value) = match o.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (o.as_str(), None),
        };
        if GENERIC_MOUNT_OPTIONS.contains(&name) || name.starts_with("x-") || name == "comment" {
            continue;
        }
        if name == "api_key" {
            return Err("api_key=… would be visible in fstab and ps; use api_key_file=PATH".into());
        }
        out.push(format!("--{}", name.replace('_', "-")));
        out.extend(value.map(str::to_owned));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_helper_options_become_flags() {
        let args: Vec<String> = ["none", "/mnt/ocx", "-o", "api_base=http://h:1,api_key_file=/etc/k,allow_other,_netdev,rw,x-systemd.automount,listing_ttl=5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            helper_args(&args).unwrap(),
            [
                "ocxfs",
                "mount",
                "/mnt/ocx",
                "--api-base",
                "http://h:1",
                "--api-key-file",
                "/etc/k",
                "--allow-other",
                "--listing-ttl",
                "5"
            ]
        );
        let secret: Vec<String> = ["none", "/m", "-o", "api_key=abc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(helper_args(&secret).is_err());
        assert!(helper_args(&["/m".to_string()]).is_err());
    }
}
