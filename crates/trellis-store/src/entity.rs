//! sea-orm entities of the system tables.

/// Users who log in.
pub mod user {
    use sea_orm::entity::prelude::*;

    /// A user.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "trellis_users")]
    pub struct Model {
        /// UUIDv7.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Login e-mail, lower case.
        #[sea_orm(unique)]
        pub email: String,
        /// Display name.
        pub name: String,
        /// argon2 PHC string.
        pub password_hash: String,
        /// A disabled user can neither log in nor use tokens.
        pub active: bool,
        /// Administrators may do everything.
        pub is_admin: bool,
        /// The user's manager (reporting line).
        pub manager: Option<String>,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Session and API tokens (only their hashes are stored).
pub mod token {
    use sea_orm::entity::prelude::*;

    /// A token.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "trellis_tokens")]
    pub struct Model {
        /// UUIDv7.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// SHA-256 of the secret, hex.
        #[sea_orm(unique)]
        pub token_hash: String,
        /// Owner of the token.
        #[sea_orm(indexed)]
        pub user_id: String,
        /// `session` or `api`.
        pub kind: String,
        /// A name the user gave an API token.
        pub name: Option<String>,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Expiry, if any.
        pub expires_at: Option<DateTimeUtc>,
        /// Revocation time, if revoked.
        pub revoked_at: Option<DateTimeUtc>,
        /// The token only reads (migration 4).
        pub read_only: bool,
        /// JSON list of the forms the token reaches; none: all the user's (migration 4).
        pub forms: Option<String>,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Teams of users.
pub mod team {
    use sea_orm::entity::prelude::*;

    /// A team.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "trellis_teams")]
    pub struct Model {
        /// Machine name.
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        /// Labels by language.
        pub label: Json,
        /// The team's manager.
        pub manager: Option<String>,
        /// Creation time.
        pub created_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Team membership.
pub mod team_member {
    use sea_orm::entity::prelude::*;

    /// One user in one team.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "trellis_team_members")]
    pub struct Model {
        /// Team name.
        #[sea_orm(primary_key, auto_increment = false)]
        pub team: String,
        /// User id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The current definition of each form.
pub mod form {
    use sea_orm::entity::prelude::*;

    /// A form.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "trellis_forms")]
    pub struct Model {
        /// Form name.
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        /// The definition (visible fields).
        pub definition: Json,
        /// Published version, from 1.
        pub version: i64,
        /// The record table.
        pub table_name: String,
        /// Every column ever made, with its field and state.
        pub columns: Json,
        /// Bundle that installed it.
        pub bundle: Option<String>,
        /// Position inside the bundle.
        pub position: i64,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Every published version of every form.
pub mod form_version {
    use sea_orm::entity::prelude::*;

    /// One version.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "trellis_form_versions")]
    pub struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// Form name.
        #[sea_orm(indexed)]
        pub form: String,
        /// Version number.
        pub version: i64,
        /// The definition as published.
        pub definition: Json,
        /// The migration plan that produced it.
        pub plan: Option<Json>,
        /// Who published it.
        pub created_by: Option<String>,
        /// When.
        pub created_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Installed bundles.
pub mod bundle {
    use sea_orm::entity::prelude::*;

    /// One bundle.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "trellis_bundles")]
    pub struct Model {
        /// Bundle name.
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        /// Installed version.
        pub version: String,
        /// Name, version, label and description as installed.
        pub manifest: Json,
        /// First install.
        pub installed_at: DateTimeUtc,
        /// Last upgrade.
        pub updated_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Uploaded files (the bytes live on disk).
pub mod file {
    use sea_orm::entity::prelude::*;

    /// One file.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "trellis_files")]
    pub struct Model {
        /// UUIDv7.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Original file name.
        pub name: String,
        /// Size in bytes.
        pub size: i64,
        /// MIME type.
        pub content_type: String,
        /// SHA-256 of the content, hex.
        pub sha256: String,
        /// Who uploaded it.
        pub created_by: Option<String>,
        /// When.
        pub created_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Applied schema migrations of the system tables.
pub mod migration {
    use sea_orm::entity::prelude::*;

    /// One applied migration.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "trellis_migrations")]
    pub struct Model {
        /// Migration number.
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i64,
        /// What it did.
        pub name: String,
        /// When.
        pub applied_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
