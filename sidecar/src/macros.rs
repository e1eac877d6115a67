//! `string_enum!`: an enum stored and sent as fixed lowercase words, with
//! serde, `Display` and `FromStr` (so the CLI parses it too) from one list.

macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($label:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        concat!("invalid ", $label, " {:?}: use one of {}"),
                        other,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}
