"""Write N leads as a CSV like a spreadsheet export: Chinese headers, select labels in
either language, phones and money in several formats, about 2% repeated e-mails (skipped
by the lead form's duplicate rule), 1% repeated phones (flagged) and 0.5% bad rows."""
import csv
import random
import sys

n, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(20261130)
sources = ["website", "官网注册", "Expo", "展会", "referral", "口碑推荐", "ads", "search"]
industries = ["manufacturing", "制造业", "IT", "finance", "金融", "retail", "零售/快消", "other"]
regions = ["north", "华北", "east", "华东", "south", "华南", "central", "west"]
cities = ["北京", "北京市", "Beijing", "上海", "上海市", "Shanghai", "广州", "深圳", "杭州"]
statuses = ["new", "未联系", "contacted", "已联系", "qualified"]


def phone(i):
    m = f"13{i % 10}{i:08d}"[:11]
    k = i % 4
    if k == 0:
        return m
    if k == 1:
        return f"+86 {m[:3]}-{m[3:7]}-{m[7:]}"
    if k == 2:
        return f"{m[:3]} {m[3:7]} {m[7:]}"
    return f"0086 {m}"


with open(path, "w", newline="", encoding="utf-8-sig") as f:
    w = csv.writer(f)
    w.writerow(["公司名称", "联系人姓名", "手机号", "邮箱", "线索来源", "所属行业", "所属区域",
                "城市", "员工人数", "预算（元）", "跟进状态", "首次联系时间"])
    for i in range(n):
        r = rng.random()
        j = i
        email = f"lead{j}@example{j % 97}.com"
        ph = phone(i)
        if r < 0.02 and i > 100:
            email = f" LEAD{i - 50}@Example{(i - 50) % 97}.COM "
        elif r < 0.03 and i > 100:
            ph = phone(i - 60)
        company = f"公司{i}号科技有限公司"
        employees = f"{rng.randint(5, 5000):,}"
        budget = rng.choice([f"¥{rng.randint(1, 900) * 1000:,}", f"{rng.randint(1, 90)}万", ""])
        status = rng.choice(statuses)
        when = rng.choice(["", f"2024年{rng.randint(1, 12)}月{rng.randint(1, 28)}日 14:30",
                           f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)} 09:15:00"])
        if rng.random() < 0.005:
            employees = "about 50"
        w.writerow([company, f"联系人{i}", ph, email, rng.choice(sources), rng.choice(industries),
                    rng.choice(regions), rng.choice(cities), employees, budget, status, when])
