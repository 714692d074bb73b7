//! The admin pages' two languages and locale-aware numbers and dates.

/// A language of the admin pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    En,
    Vi,
}

impl Lang {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "en" => Some(Self::En),
            "vi" => Some(Self::Vi),
            _ => None,
        }
    }

    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Vi => "vi",
        }
    }

    /// A whole number with the locale's thousands separator: 6,738,189 / 6.738.189.
    pub(crate) fn number(self, n: u64) -> String {
        let sep = match self {
            Self::En => ',',
            Self::Vi => '.',
        };
        let digits = n.to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(sep);
            }
            out.push(c);
        }
        out
    }

    /// A share as a percentage with one decimal: 60.0% / 60,0%.
    pub(crate) fn percent(self, share: f64) -> String {
        let s = format!("{:.1}%", share * 100.0);
        match self {
            Self::En => s,
            Self::Vi => s.replace('.', ","),
        }
    }

    /// A duration in seconds as minutes and seconds: 2m 36s / 2 phút 36 giây.
    pub(crate) fn duration(self, seconds: f64) -> String {
        let s = seconds.max(0.0).round() as u64;
        let (m, s) = (s / 60, s % 60);
        match self {
            Self::En if m > 0 => format!("{m}m {s}s"),
            Self::En => format!("{s}s"),
            Self::Vi if m > 0 => format!("{m} phút {s} giây"),
            Self::Vi => format!("{s} giây"),
        }
    }

    /// A date: Jul 5, 2021 / 05/07/2021.
    pub(crate) fn date(self, d: chrono::NaiveDate) -> String {
        match self {
            Self::En => d.format("%b %-d, %Y").to_string(),
            Self::Vi => d.format("%d/%m/%Y").to_string(),
        }
    }

    /// Every label of the pages.
    pub(crate) fn t(self) -> &'static Labels {
        match self {
            Self::En => &EN,
            Self::Vi => &VI,
        }
    }
}

/// The labels of the admin pages in one language.
pub(crate) struct Labels {
    pub(crate) title: &'static str,
    pub(crate) sign_in: &'static str,
    pub(crate) sign_out: &'static str,
    pub(crate) token: &'static str,
    pub(crate) token_help: &'static str,
    pub(crate) wrong_token: &'static str,
    pub(crate) too_many: &'static str,
    pub(crate) login_name: &'static str,
    pub(crate) password: &'static str,
    pub(crate) or_token: &'static str,
    pub(crate) wrong_password: &'static str,
    pub(crate) invite_title: &'static str,
    pub(crate) invite_help: &'static str,
    pub(crate) new_password: &'static str,
    pub(crate) set_password: &'static str,
    pub(crate) password_short: &'static str,
    pub(crate) invite_gone: &'static str,
    pub(crate) add_site: &'static str,
    pub(crate) site_id: &'static str,
    pub(crate) site_name: &'static str,
    pub(crate) domains: &'static str,
    pub(crate) time_zone: &'static str,
    pub(crate) public_counters: &'static str,
    pub(crate) create: &'static str,
    pub(crate) settings: &'static str,
    pub(crate) from_config: &'static str,
    pub(crate) config_read_only: &'static str,
    pub(crate) embed: &'static str,
    pub(crate) embed_help: &'static str,
    pub(crate) copy: &'static str,
    pub(crate) copied: &'static str,
    pub(crate) edit_site: &'static str,
    pub(crate) save: &'static str,
    pub(crate) share: &'static str,
    pub(crate) share_help: &'static str,
    pub(crate) share_password: &'static str,
    pub(crate) share_create: &'static str,
    pub(crate) shares_none: &'static str,
    pub(crate) revoke: &'static str,
    pub(crate) revoke_confirm: &'static str,
    pub(crate) delete_site: &'static str,
    pub(crate) delete_help: &'static str,
    pub(crate) delete_keep: &'static str,
    pub(crate) delete_drop: &'static str,
    pub(crate) delete_confirm: &'static str,
    pub(crate) delete: &'static str,
    pub(crate) with_password: &'static str,
    pub(crate) created_by: &'static str,
    pub(crate) people: &'static str,
    pub(crate) changes: &'static str,
    pub(crate) role: &'static str,
    pub(crate) role_owner: &'static str,
    pub(crate) role_admin: &'static str,
    pub(crate) role_viewer: &'static str,
    pub(crate) invite: &'static str,
    pub(crate) invite_send: &'static str,
    pub(crate) invite_shown: &'static str,
    pub(crate) invited: &'static str,
    pub(crate) remove: &'static str,
    pub(crate) remove_confirm: &'static str,
    pub(crate) all_sites_role: &'static str,
    pub(crate) when: &'static str,
    pub(crate) who: &'static str,
    pub(crate) what: &'static str,
    pub(crate) detail: &'static str,
    pub(crate) share_title: &'static str,
    pub(crate) share_password_help: &'static str,
    pub(crate) open: &'static str,
    pub(crate) wrong_share_password: &'static str,
    pub(crate) sites: &'static str,
    pub(crate) today_views: &'static str,
    pub(crate) online_now: &'static str,
    pub(crate) views: &'static str,
    pub(crate) visits: &'static str,
    pub(crate) visitors: &'static str,
    pub(crate) bounce_rate: &'static str,
    pub(crate) avg_visit: &'static str,
    pub(crate) bots_filtered: &'static str,
    pub(crate) repeats_not_counted: &'static str,
    pub(crate) unverified_not_counted: &'static str,
    pub(crate) today: &'static str,
    pub(crate) yesterday: &'static str,
    pub(crate) last_7: &'static str,
    pub(crate) last_30: &'static str,
    pub(crate) custom: &'static str,
    pub(crate) from: &'static str,
    pub(crate) to: &'static str,
    pub(crate) apply: &'static str,
    pub(crate) over_time: &'static str,
    pub(crate) top_pages: &'static str,
    pub(crate) page: &'static str,
    pub(crate) referrers: &'static str,
    pub(crate) direct: &'static str,
    pub(crate) browsers: &'static str,
    pub(crate) os: &'static str,
    pub(crate) devices: &'static str,
    pub(crate) countries: &'static str,
    pub(crate) unknown: &'static str,
    /// Device classes: desktop, mobile, tablet.
    pub(crate) devices_named: [&'static str; 3],
    pub(crate) reading_now: &'static str,
    pub(crate) nobody: &'static str,
    /// The live row of the pages past `tracking.max_pages`.
    pub(crate) other_pages: &'static str,
    /// Shown when a site holds `tracking.max_pages` pages live; `{n}` is that cap.
    pub(crate) page_cap_reached: &'static str,
    pub(crate) no_data: &'static str,
    pub(crate) all_sites: &'static str,
    pub(crate) times_in: &'static str,
    pub(crate) language: &'static str,
}

static EN: Labels = Labels {
    title: "Tally statistics",
    sign_in: "Sign in",
    sign_out: "Sign out",
    token: "Admin token",
    token_help: "Paste an admin token from Tally's configuration.",
    wrong_token: "That token is not valid. Check it and try again.",
    too_many: "Too many sign-in attempts from your address. Wait a minute and try again.",
    login_name: "Login name",
    password: "Password",
    or_token: "Or sign in with an admin token",
    wrong_password: "That name and password do not match. Check them and try again.",
    invite_title: "Set your password",
    invite_help: "You were invited to Tally. Choose a password of at least 10 characters.",
    new_password: "New password",
    set_password: "Set password and sign in",
    password_short: "The password must be at least 10 characters.",
    invite_gone: "This invitation link was used already or has expired. Ask for a new one.",
    add_site: "Add a site",
    site_id: "Site id (a-z, 0-9, - and _; used in the snippet)",
    site_name: "Name shown here",
    domains: "Domains (separated by spaces; their subdomains count too)",
    time_zone: "Time zone",
    public_counters: "Public counters on the site's pages",
    create: "Create",
    settings: "Settings",
    from_config: "from the configuration",
    config_read_only: "This site is declared in Tally's configuration file: change it there.",
    embed: "Embed snippet",
    embed_help: "Put this in every page of the site, before </head>.",
    copy: "Copy",
    copied: "Copied",
    edit_site: "Edit the site",
    save: "Save",
    share: "Share the statistics",
    share_help: "Anyone with the link sees this site's statistics, without an account. The link is shown once.",
    share_password: "Password (optional, at least 10 characters)",
    share_create: "Make a link",
    shares_none: "No shared links.",
    revoke: "Revoke",
    revoke_confirm: "Revoke this link? Whoever has it loses access at once.",
    delete_site: "Delete the site",
    delete_help: "Tracking stops at once.",
    delete_keep: "Keep its statistics in ClickHouse",
    delete_drop: "Delete its statistics and live counters too",
    delete_confirm: "Delete this site? This cannot be undone.",
    delete: "Delete",
    with_password: "with a password",
    created_by: "made by",
    people: "People",
    changes: "Changes",
    role: "Role",
    role_owner: "Owner: everything, people included",
    role_admin: "Admin: edits and reads the sites chosen",
    role_viewer: "Viewer: reads the sites chosen",
    invite: "Invite someone",
    invite_send: "Make an invitation link",
    invite_shown: "Hand over this link (it is shown once, works once, for 7 days):",
    invited: "invited",
    remove: "Remove",
    remove_confirm: "Remove this person? They are signed out at once.",
    all_sites_role: "all sites",
    when: "When",
    who: "Who",
    what: "What",
    detail: "Detail",
    share_title: "Shared statistics",
    share_password_help: "This page is protected by a password. Ask whoever shared it.",
    open: "Open",
    wrong_share_password: "That password is not right. Check it and try again.",
    sites: "Sites",
    today_views: "Views today",
    online_now: "Online now",
    views: "Views",
    visits: "Visits",
    visitors: "Unique visitors",
    bounce_rate: "Bounce rate",
    avg_visit: "Average visit",
    bots_filtered: "Crawler hits filtered",
    repeats_not_counted: "Reloads not counted",
    unverified_not_counted: "Pixel hits without a referrer (not counted)",
    today: "Today",
    yesterday: "Yesterday",
    last_7: "7 days",
    last_30: "30 days",
    custom: "Custom",
    from: "From",
    to: "To",
    apply: "Show",
    over_time: "Views and visitors over time",
    top_pages: "Top pages",
    page: "Page",
    referrers: "Referrers",
    direct: "(direct or unknown)",
    browsers: "Browsers",
    os: "Operating systems",
    devices: "Devices",
    countries: "Countries",
    unknown: "(unknown)",
    devices_named: ["Desktop", "Mobile", "Tablet"],
    reading_now: "Being read now",
    nobody: "Nobody is reading right now.",
    other_pages: "(other pages)",
    page_cap_reached: "This site has reached its cap of {n} live pages (tracking.max_pages): views of newer pages count under “(other pages)” here and in the page counters, and in full in the statistics.",
    no_data: "No data for this range.",
    all_sites: "All sites",
    times_in: "Times in",
    language: "Tiếng Việt",
};

static VI: Labels = Labels {
    title: "Thống kê Tally",
    sign_in: "Đăng nhập",
    sign_out: "Đăng xuất",
    token: "Mã quản trị",
    token_help: "Dán mã quản trị trong cấu hình của Tally.",
    wrong_token: "Mã không hợp lệ. Vui lòng kiểm tra và thử lại.",
    too_many: "Đăng nhập sai quá nhiều lần. Vui lòng chờ một phút rồi thử lại.",
    login_name: "Tên đăng nhập",
    password: "Mật khẩu",
    or_token: "Hoặc đăng nhập bằng mã quản trị",
    wrong_password: "Tên đăng nhập và mật khẩu không khớp. Vui lòng kiểm tra và thử lại.",
    invite_title: "Đặt mật khẩu",
    invite_help: "Bạn được mời sử dụng Tally. Hãy chọn mật khẩu dài ít nhất 10 ký tự.",
    new_password: "Mật khẩu mới",
    set_password: "Đặt mật khẩu và đăng nhập",
    password_short: "Mật khẩu phải dài ít nhất 10 ký tự.",
    invite_gone: "Liên kết mời này đã được dùng hoặc đã hết hạn. Hãy xin một liên kết mới.",
    add_site: "Thêm trang web",
    site_id: "Mã trang (a-z, 0-9, - và _; dùng trong đoạn mã nhúng)",
    site_name: "Tên hiển thị",
    domains: "Tên miền (cách nhau bởi dấu cách; kể cả tên miền con)",
    time_zone: "Múi giờ",
    public_counters: "Hiện bộ đếm công khai trên trang",
    create: "Tạo",
    settings: "Cài đặt",
    from_config: "từ tệp cấu hình",
    config_read_only: "Trang này được khai báo trong tệp cấu hình của Tally: hãy sửa ở đó.",
    embed: "Đoạn mã nhúng",
    embed_help: "Đặt đoạn này vào mọi trang của trang web, trước </head>.",
    copy: "Sao chép",
    copied: "Đã sao chép",
    edit_site: "Sửa trang web",
    save: "Lưu",
    share: "Chia sẻ thống kê",
    share_help: "Ai có liên kết đều xem được thống kê của trang này mà không cần tài khoản. Liên kết chỉ hiện một lần.",
    share_password: "Mật khẩu (không bắt buộc, ít nhất 10 ký tự)",
    share_create: "Tạo liên kết",
    shares_none: "Chưa có liên kết chia sẻ.",
    revoke: "Thu hồi",
    revoke_confirm: "Thu hồi liên kết này? Người đang dùng sẽ mất quyền xem ngay.",
    delete_site: "Xóa trang web",
    delete_help: "Việc ghi nhận dừng ngay lập tức.",
    delete_keep: "Giữ thống kê trong ClickHouse",
    delete_drop: "Xóa cả thống kê và bộ đếm trực tiếp",
    delete_confirm: "Xóa trang web này? Không thể hoàn tác.",
    delete: "Xóa",
    with_password: "có mật khẩu",
    created_by: "tạo bởi",
    people: "Người dùng",
    changes: "Lịch sử thay đổi",
    role: "Vai trò",
    role_owner: "Chủ sở hữu: toàn quyền, kể cả người dùng",
    role_admin: "Quản trị: sửa và xem các trang được chọn",
    role_viewer: "Người xem: chỉ xem các trang được chọn",
    invite: "Mời người dùng",
    invite_send: "Tạo liên kết mời",
    invite_shown: "Gửi liên kết này (chỉ hiện một lần, dùng được một lần, trong 7 ngày):",
    invited: "đã mời",
    remove: "Xóa",
    remove_confirm: "Xóa người dùng này? Họ sẽ bị đăng xuất ngay.",
    all_sites_role: "mọi trang",
    when: "Thời điểm",
    who: "Người thực hiện",
    what: "Thao tác",
    detail: "Chi tiết",
    share_title: "Thống kê được chia sẻ",
    share_password_help: "Trang này được bảo vệ bằng mật khẩu. Hãy hỏi người đã chia sẻ.",
    open: "Mở",
    wrong_share_password: "Mật khẩu không đúng. Vui lòng kiểm tra và thử lại.",
    sites: "Trang web",
    today_views: "Lượt xem hôm nay",
    online_now: "Đang online",
    views: "Lượt xem",
    visits: "Lượt truy cập",
    visitors: "Khách duy nhất",
    bounce_rate: "Tỷ lệ thoát",
    avg_visit: "Thời gian truy cập TB",
    bots_filtered: "Lượt bot đã lọc",
    repeats_not_counted: "Lượt tải lại không tính",
    unverified_not_counted: "Lượt pixel không rõ trang nguồn (không tính)",
    today: "Hôm nay",
    yesterday: "Hôm qua",
    last_7: "7 ngày",
    last_30: "30 ngày",
    custom: "Tùy chọn",
    from: "Từ",
    to: "Đến",
    apply: "Xem",
    over_time: "Lượt xem và khách theo thời gian",
    top_pages: "Trang được xem nhiều",
    page: "Trang",
    referrers: "Nguồn truy cập",
    direct: "(trực tiếp hoặc không rõ)",
    browsers: "Trình duyệt",
    os: "Hệ điều hành",
    devices: "Thiết bị",
    countries: "Quốc gia",
    unknown: "(không rõ)",
    devices_named: ["Máy tính", "Điện thoại", "Máy tính bảng"],
    reading_now: "Đang được đọc",
    nobody: "Hiện không có ai đang đọc.",
    other_pages: "(các trang khác)",
    page_cap_reached: "Trang web đã đạt mức tối đa {n} trang trực tiếp (tracking.max_pages): lượt xem của các trang mới hơn được tính vào “(các trang khác)” ở đây và trong bộ đếm trang, và được tính đầy đủ trong thống kê.",
    no_data: "Không có dữ liệu trong khoảng này.",
    all_sites: "Tất cả trang web",
    times_in: "Giờ theo",
    language: "English",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_the_locale() {
        assert_eq!(Lang::En.number(6_738_189), "6,738,189");
        assert_eq!(Lang::Vi.number(6_738_189), "6.738.189");
        assert_eq!(Lang::En.number(120), "120");
        assert_eq!(Lang::En.number(1000), "1,000");
        assert_eq!(Lang::Vi.percent(0.6), "60,0%");
        assert_eq!(Lang::En.duration(162.0), "2m 42s");
        assert_eq!(Lang::Vi.duration(42.0), "42 giây");
        let d = chrono::NaiveDate::from_ymd_opt(2021, 7, 5).unwrap();
        assert_eq!(Lang::Vi.date(d), "05/07/2021");
        assert_eq!(Lang::En.date(d), "Jul 5, 2021");
    }
}
