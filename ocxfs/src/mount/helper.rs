//! mount(8)'s argument form (`-o` options, from fstab or typed after
//! `ocxfs mount`) turned into `ocxfs mount` arguments.

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
    out.extend(option_flags(options.iter().map(String::as_str))?);
    Ok(out)
}

/// `ocxfs mount … -o a,b=c …`: each `-o` list replaced in place by its
/// flags, as `mount.fuse.ocxfs` reads them, so both take the same options.
/// Arguments before `mount` (global options, the program) are kept as
/// they are.
pub fn expand_mount_options(args: &[String]) -> Result<Vec<String>, String> {
    let Some(sub) = args.iter().position(|a| a == "mount") else {
        return Ok(args.to_vec());
    };
    let mut out = args[..=sub].to_vec();
    let mut it = args[sub + 1..].iter();
    while let Some(a) = it.next() {
        let list = match a.as_str() {
            "--" => {
                out.push(a.clone());
                out.extend(it.by_ref().cloned());
                break;
            }
            "-o" => it
                .next()
                .ok_or("-o needs options, e.g. -o allow_other,uid=1000")?,
            o if o.starts_with("-o") => &o[2..],
            _ => {
                out.push(a.clone());
                continue;
            }
        };
        out.extend(option_flags(list.split(','))?);
    }
    Ok(out)
}

/// `name=value` -> `--name value`, `flag` -> `--flag` (underscores become
/// dashes); mount(8)'s generic options are dropped.
fn option_flags<'a>(options: impl Iterator<Item = &'a str>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for o in options.filter(|o| !o.is_empty()) {
        let (name, value) = match o.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (o, None),
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

    #[test]
    fn mount_takes_dash_o_directly() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            expand_mount_options(&args(&[
                "ocxfs",
                "--log-level",
                "debug",
                "mount",
                "/m",
                "-o",
                "uid=1000,allow_other,ro",
                "-oca_file=/etc/ca.pem",
                "-f"
            ]))
            .unwrap(),
            args(&[
                "ocxfs",
                "--log-level",
                "debug",
                "mount",
                "/m",
                "--uid",
                "1000",
                "--allow-other",
                "--ca-file",
                "/etc/ca.pem",
                "-f"
            ])
        );
        // Other commands, and whatever follows `--`, are left alone.
        let stats = args(&["ocxfs", "stats", "-o"]);
        assert_eq!(expand_mount_options(&stats).unwrap(), stats);
        let after = args(&["ocxfs", "mount", "--", "-odd"]);
        assert_eq!(expand_mount_options(&after).unwrap(), after);
        assert!(expand_mount_options(&args(&["ocxfs", "mount", "/m", "-o"])).is_err());
        assert!(expand_mount_options(&args(&["ocxfs", "mount", "/m", "-o", "api_key=k"])).is_err());
    }
}
