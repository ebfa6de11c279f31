//! The commercial terms and seasonal offers the e-mails quote, by the CRM's rules: discount and
//! minimum order by business type, products by the season of the month.

/// Discount percent and minimum order (EUR) by business type, as the CRM defines them.
pub fn business_terms(business_type: Option<&str>) -> (u32, u32) {
    match business_type
        .map(|b| b.trim().to_ascii_uppercase())
        .as_deref()
    {
        Some("RESTAURANT") => (15, 500),
        Some("HOTEL") => (20, 1000),
        Some("KANTINE") => (25, 2000),
        Some("CATERING") => (10, 300),
        _ => (10, 250),
    }
}

/// The season of a month (1–12): `asparagus` (March–May), `oktoberfest` (September–October),
/// `christmas` (November–December), none otherwise.
pub fn season(month: u32) -> Option<&'static str> {
    match month {
        3..=5 => Some("asparagus"),
        9 | 10 => Some("oktoberfest"),
        11 | 12 => Some("christmas"),
        _ => None,
    }
}

/// Seasonal product suggestions for a month (1–12).
pub fn seasonal_products(month: u32) -> &'static str {
    match season(month) {
        Some("asparagus") => "Spargel-Spezialitäten und Frühlingsmenüs",
        Some("oktoberfest") => "Oktoberfest-Spezialitäten",
        Some("christmas") => "Weihnachtsmenüs und Festtagsbraten",
        _ => "unsere Saisonklassiker",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_follow_the_business_type_table() {
        assert_eq!(business_terms(Some("RESTAURANT")), (15, 500));
        assert_eq!(business_terms(Some("hotel")), (20, 1000));
        assert_eq!(business_terms(Some("KANTINE")), (25, 2000));
        assert_eq!(business_terms(Some("CATERING")), (10, 300));
        assert_eq!(business_terms(Some("BAECKEREI")), (10, 250));
        assert_eq!(business_terms(None), (10, 250));
        assert!(seasonal_products(4).contains("Spargel"));
        assert!(seasonal_products(10).contains("Oktoberfest"));
        assert!(seasonal_products(12).contains("Weihnacht"));
        assert_eq!(season(2), None);
        assert_eq!(season(6), None);
    }
}
