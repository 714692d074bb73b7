//! Vietnamese names of Vietnam's provinces and main cities, for the Vietnamese admin page.
//! City databases name them in English only (GeoLite2 has no Vietnamese names; the
//! ip-location-db files carry English alone), as "Bac Ninh Province", "Ho Chi Minh" or
//! "Haiphong"; the stored name stays the database's, and only the page shows it in
//! Vietnamese. Written here from the 63 provinces' official names (2008–2025 list).

/// The English stem (no " Province", no diacritics, lower case, no spaces or dashes) and
/// the Vietnamese name.
const NAMES: &[(&str, &str)] = &[
    ("angiang", "An Giang"),
    ("bariavungtau", "Bà Rịa – Vũng Tàu"),
    ("bacgiang", "Bắc Giang"),
    ("backan", "Bắc Kạn"),
    ("baclieu", "Bạc Liêu"),
    ("bacninh", "Bắc Ninh"),
    ("bentre", "Bến Tre"),
    ("binhdinh", "Bình Định"),
    ("binhduong", "Bình Dương"),
    ("binhphuoc", "Bình Phước"),
    ("binhthuan", "Bình Thuận"),
    ("camau", "Cà Mau"),
    ("cantho", "Cần Thơ"),
    ("caobang", "Cao Bằng"),
    ("danang", "Đà Nẵng"),
    ("daklak", "Đắk Lắk"),
    ("daknong", "Đắk Nông"),
    ("dienbien", "Điện Biên"),
    ("dongnai", "Đồng Nai"),
    ("dongthap", "Đồng Tháp"),
    ("gialai", "Gia Lai"),
    ("hagiang", "Hà Giang"),
    ("hanam", "Hà Nam"),
    ("hatinh", "Hà Tĩnh"),
    ("haiduong", "Hải Dương"),
    ("haiphong", "Hải Phòng"),
    ("hanoi", "Hà Nội"),
    ("haugiang", "Hậu Giang"),
    ("hochiminh", "TP. Hồ Chí Minh"),
    ("hochiminhcity", "TP. Hồ Chí Minh"),
    ("hoabinh", "Hòa Bình"),
    ("hue", "Huế"),
    ("hungyen", "Hưng Yên"),
    ("khanhhoa", "Khánh Hòa"),
    ("kiengiang", "Kiên Giang"),
    ("kontum", "Kon Tum"),
    ("laichau", "Lai Châu"),
    ("lamdong", "Lâm Đồng"),
    ("langson", "Lạng Sơn"),
    ("laocai", "Lào Cai"),
    ("longan", "Long An"),
    ("namdinh", "Nam Định"),
    ("nghean", "Nghệ An"),
    ("ninhbinh", "Ninh Bình"),
    ("ninhthuan", "Ninh Thuận"),
    ("phutho", "Phú Thọ"),
    ("phuyen", "Phú Yên"),
    ("quangbinh", "Quảng Bình"),
    ("quangnam", "Quảng Nam"),
    ("quangngai", "Quảng Ngãi"),
    ("quangninh", "Quảng Ninh"),
    ("quangtri", "Quảng Trị"),
    ("soctrang", "Sóc Trăng"),
    ("sonla", "Sơn La"),
    ("tayninh", "Tây Ninh"),
    ("thaibinh", "Thái Bình"),
    ("thainguyen", "Thái Nguyên"),
    ("thanhhoa", "Thanh Hóa"),
    ("thuathienhue", "Thừa Thiên Huế"),
    ("tiengiang", "Tiền Giang"),
    ("travinh", "Trà Vinh"),
    ("tuyenquang", "Tuyên Quang"),
    ("vinhlong", "Vĩnh Long"),
    ("vinhphuc", "Vĩnh Phúc"),
    ("yenbai", "Yên Bái"),
];

/// The Vietnamese name of a Vietnamese province or city named in English by a database
/// ("Bac Ninh Province", "Ho Chi Minh City", "Haiphong"), if it is one.
pub(crate) fn vietnamese(english: &str) -> Option<&'static str> {
    let mut stem: String = english
        .chars()
        .filter(|c| c.is_ascii_alphabetic())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    for suffix in ["province", "povince"] {
        if let Some(s) = stem.strip_suffix(suffix) {
            stem = s.to_owned();
        }
    }
    NAMES.iter().find(|(k, _)| *k == stem).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::vietnamese;

    #[test]
    fn the_databases_english_names_are_found() {
        for (en, vi) in [
            ("Ho Chi Minh", "TP. Hồ Chí Minh"),
            ("Ho Chi Minh City", "TP. Hồ Chí Minh"),
            ("Ba Ria–Vung Tau Province", "Bà Rịa – Vũng Tàu"),
            ("Long An Povince", "Long An"),
            ("Haiphong", "Hải Phòng"),
            ("Thua Thien Hue Province", "Thừa Thiên Huế"),
        ] {
            assert_eq!(vietnamese(en), Some(vi), "{en}");
        }
        assert_eq!(vietnamese("California"), None);
    }
}
